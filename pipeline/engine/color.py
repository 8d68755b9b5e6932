"""Colour preservation (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

luminance: stylize luminance only, then put the content's chroma back.
histogram: recolour the style image so its colour mean and covariance match the content's.
"""

from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(rgb: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", _RGB_TO_YIQ.to(rgb), rgb)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB_TO_YIQ).to(yiq), yiq)


def luminance_image(rgb: torch.Tensor) -> torch.Tensor:
    """Grey RGB image holding the luminance, so VGG sees it as a normal picture."""
    return rgb_to_yiq(rgb)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style_grey: torch.Tensor, content_grey: torch.Tensor) -> torch.Tensor:
    """Shift and scale the style's luminance to the content's mean and std."""
    s_mean, s_std = style_grey.mean(), style_grey.std() + 1e-6
    c_mean, c_std = content_grey.mean(), content_grey.std()
    return ((style_grey - s_mean) * (c_std / s_std) + c_mean).clamp(0, 1)


def with_content_chroma(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Luminance of `stylized` with the chroma (I, Q) of `content`."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([rgb_to_yiq(stylized)[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)


def _mean_and_cov(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = rgb.reshape(3, -1).double()
    mean = pixels.mean(dim=1, keepdim=True)
    centred = pixels - mean
    return mean, centred @ centred.T / pixels.shape[1] + 1e-5 * torch.eye(3, dtype=pixels.dtype)


def _matrix_sqrt(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-8).sqrt()
    if inverse:
        values = 1.0 / values
    return vectors @ torch.diag(values) @ vectors.T


def match_color_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Affine recolouring x' = A (x - mu_s) + mu_c with A = Cc^1/2 Cs^-1/2 (first two moments)."""
    s_mean, s_cov = _mean_and_cov(style)
    c_mean, c_cov = _mean_and_cov(content)
    transform = _matrix_sqrt(c_cov) @ _matrix_sqrt(s_cov, inverse=True)
    pixels = style.reshape(3, -1).double()
    matched = transform @ (pixels - s_mean) + c_mean
    return matched.reshape(style.shape).to(style.dtype).clamp(0, 1)


class ColorPreservation:
    """Every place a colour mode changes the work: what VGG sees (luminance: grey images),
    the style's colours (recoloured after the content), and the result's (the content's chroma back)."""

    def __init__(self, mode: str):
        self.mode = mode

    @property
    def follows_content(self) -> bool:
        """Whether the style target depends on the content it is used with."""
        return self.mode != "none"

    def working(self, image: torch.Tensor) -> torch.Tensor:
        return luminance_image(image) if self.mode == "luminance" else image

    def style(self, style: torch.Tensor, working_content: torch.Tensor) -> torch.Tensor:
        if self.mode == "histogram":
            return match_color_histogram(style, working_content)
        if self.mode == "luminance":
            return match_luminance(luminance_image(style), working_content)
        return style

    def restore(self, image: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        return with_content_chroma(image, content) if self.mode == "luminance" else image
