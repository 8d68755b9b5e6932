"""The judge: how stylized and how recognisable an output is, on yardsticks that stay fixed
whatever the stylization's weights, strength, layers, loss or precision, so that changing a
default never moves them. It computes its figures itself, never through the objective.

- content distance: relu4_2 squared error to the photo's features, relative to their power
  (0: the photo's content exactly; about 1: nothing of it left);
- style distance: the mean over relu1_1 ... relu5_1 (unweighted) of the squared Gram error to
  the painting's, relative to the painting Gram's power, with the painting resized to the
  output's long edge; `verdict` divides it by the unstylized photo's own (1: no style at all;
  0: the painting's statistics exactly).

Always Caffe-convention VGG19 features in fp32 with max pooling, on the stylization's weights
source and device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..settings import StyleSettings
from .losses import gram_matrix
from .network import network_for
from .stylize import prepare_styles
from .tensors import ImageLike, as_tensor, resize, resize_long_edge

JUDGE_CONTENT_LAYER = "relu4_2"
JUDGE_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
JUDGE_TILE = 4096  # paintings are judged whole


def judge_settings(settings: StyleSettings | None = None) -> StyleSettings:
    settings = settings or StyleSettings()
    return StyleSettings(weights=settings.weights, device=settings.device, content_layers=(JUDGE_CONTENT_LAYER,),
                         style_layers=JUDGE_STYLE_LAYERS, precision="fp32", pooling="max")


@torch.no_grad()
def distances(image: ImageLike, content: ImageLike, styles, settings: StyleSettings | None = None) -> tuple[float, float]:
    """(style, content) distance of `image`, unnormalised: ratios of two of them compare outputs of one photo."""
    network = network_for(judge_settings(settings))
    image = as_tensor(image).to(network.device)
    features = network.features(image)
    content_features = network.features(resize(as_tensor(content), tuple(image.shape[-2:])).to(network.device))
    ours, target = features[JUDGE_CONTENT_LAYER].float(), content_features[JUDGE_CONTENT_LAYER].float()
    content_distance = (ours - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)
    painting = _painting_grams(styles, max(image.shape[-2:]), network)
    style_distance = sum(_relative(gram_matrix(features[layer]), painting[layer]) for layer in JUDGE_STYLE_LAYERS) / len(JUDGE_STYLE_LAYERS)
    return float(style_distance), float(content_distance)


def _painting_grams(styles, long_edge: int, network) -> dict[str, torch.Tensor]:
    """The blend of the paintings' Gram matrices, each painting at the output's long edge."""
    blended: dict[str, torch.Tensor] = {}
    for style in prepare_styles(styles):
        # The network's Gram cache: a clip's frames are all judged against the same painting and size.
        grams = network.style_grams(("judge", style.key, long_edge),
                                    lambda: resize_long_edge(style.tensor, long_edge).to(network.device), JUDGE_TILE)
        for layer in JUDGE_STYLE_LAYERS:
            blended[layer] = blended.get(layer, 0) + style.weight * grams[layer]
    return blended


def _relative(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (gram - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)


@dataclass(frozen=True)
class Verdict:
    """The judge's two figures for one output; lower is closer on each."""

    style: float  # the output's style distance over the unstylized photo's
    content: float  # relative relu4_2 error to the photo

    def as_dict(self) -> dict[str, float]:
        return {"style": self.style, "content": self.content}


def verdict(image: ImageLike, content: ImageLike, styles, settings: StyleSettings | None = None) -> Verdict:
    """Style and content distance of a stylized `image` of `content`, comparable across photos and paintings."""
    image = as_tensor(image)
    photo = resize(as_tensor(content), tuple(image.shape[-2:]))
    style, content_distance = distances(image, photo, styles, settings)
    photo_style, _ = distances(photo, photo, styles, settings)
    return Verdict(style / max(photo_style, 1e-12), content_distance)
