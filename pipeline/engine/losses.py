"""Losses as small modules. Every loss returns one value per image in the batch,
and is normalised by its target's magnitude so that default weights mean the
same thing whatever the weights source or layer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

EPS = 1e-8


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, C], averaged over positions, always in fp32."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w).float()
    return flat @ flat.transpose(1, 2) / (h * w)


def _relative_mse(value: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, value.dim()))
    return (value.float() - target).pow(2).mean(dim=dims) * scale


def _inverse_power(target: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, target.dim()))
    return 1.0 / (target.pow(2).mean(dim=dims) + EPS)


class ContentLoss(nn.Module):
    """Squared feature error relative to the content features' power."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        target = target.detach().float()
        self.register_buffer("target", target)
        self.register_buffer("scale", _inverse_power(target))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _relative_mse(features, self.target, self.scale)


class StyleLoss(nn.Module):
    """Squared Gram-matrix error relative to the style Gram's power."""

    def __init__(self, target_gram: torch.Tensor):
        super().__init__()
        target_gram = target_gram.detach().float()
        self.register_buffer("target", target_gram)
        self.register_buffer("scale", _inverse_power(target_gram))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _relative_mse(gram_matrix(features), self.target, self.scale)


class TotalVariationLoss(nn.Module):
    """Mean squared difference between neighbouring pixels; smooths high-frequency noise."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
        dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
        return dx + dy


@dataclass
class TemporalTarget:
    """Ruder et al.: the previous output warped into this frame, and where that warp is reliable."""

    warped: torch.Tensor  # [1, 3, H, W]
    mask: torch.Tensor  # [1, 1, H, W], 1 where the flow is reliable
    weight: float

    def crop(self, window) -> "TemporalTarget":
        return TemporalTarget(self.warped[window], self.mask[window], self.weight)


class TemporalLoss(nn.Module):
    """Squared change from the warped previous output where the flow is reliable,
    averaged over all pixels, so frames with more reliable flow are held more firmly."""

    def __init__(self, target: TemporalTarget):
        super().__init__()
        self.register_buffer("warped", target.warped.detach().float())
        self.register_buffer("mask", target.mask.detach().float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.mask * (image.float() - self.warped).pow(2)).mean(dim=(1, 2, 3))


@dataclass
class LossTerms:
    """Weighted loss terms, one value per image in the batch."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    temporal: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.content + self.style + self.tv + self.temporal

    def detached(self) -> "LossTerms":
        return LossTerms(self.content.detach(), self.style.detach(), self.tv.detach(), self.temporal.detach())

    def to(self, device: str | torch.device) -> "LossTerms":
        return LossTerms(self.content.to(device), self.style.to(device), self.tv.to(device), self.temporal.to(device))

    def as_floats(self, index: int | None = None) -> dict[str, float]:
        def pick(t: torch.Tensor) -> float:
            return float(t.detach().sum() if index is None else t.detach()[index])

        terms = {"total": self.total, "content": self.content, "style": self.style, "tv": self.tv, "temporal": self.temporal}
        return {name: pick(value) for name, value in terms.items()}


class GatysLoss(nn.Module):
    """content_weight * content + style_weight * sum_l w_l * style_l + tv_weight * tv (+ temporal)."""

    def __init__(
        self,
        content: dict[str, ContentLoss],
        style: dict[str, StyleLoss],
        style_layer_weights: dict[str, float],
        content_weight: float,
        style_weight: float | torch.Tensor,  # one for all, or one per image [B]
        tv_weight: float,
        temporal: TemporalTarget | None = None,
    ):
        super().__init__()
        self.content = nn.ModuleDict(content)
        self.style = nn.ModuleDict(style)
        self.style_layer_weights = style_layer_weights
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.tv = TotalVariationLoss()
        self.temporal = TemporalLoss(temporal) if temporal is not None else None
        self.temporal_weight = temporal.weight if temporal is not None else 0.0

    def forward(self, image: torch.Tensor, features: dict[str, torch.Tensor]) -> LossTerms:
        zero = image.new_zeros(image.shape[0], dtype=torch.float32)
        content = sum((loss(features[name]) for name, loss in self.content.items()), zero)
        style = sum(
            (self.style_layer_weights[name] * loss(features[name]) for name, loss in self.style.items()), zero
        )
        tv = self.tv(image.float()) if self.tv_weight else zero
        temporal = self.temporal(image) if self.temporal is not None else zero
        return LossTerms(
            self.content_weight * content, self.style_weight * style, self.tv_weight * tv, self.temporal_weight * temporal
        )
