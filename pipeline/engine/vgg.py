"""VGG19 feature extractor built from its layer table (`pipeline.vgg19`), truncated after the deepest tap."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..vgg19 import LAYER_NAMES, check_layers
from .device import NetworkPrecision
from .weights import WeightsSource

Pooling = Literal["max", "avg"]


class VGGFeatures(nn.Module):
    """Maps RGB images in [0, 1] to a dict of the requested VGG19 activations, in the
    precision asked for (bf16 activations from `precision.reduced_from` on)."""

    def __init__(
        self,
        weights: WeightsSource,
        taps: Sequence[str],
        pooling: Pooling = "max",
        channels_last: bool = False,
        precision: NetworkPrecision = NetworkPrecision(),
    ):
        super().__init__()
        check_layers(taps, "layers")
        self.taps = tuple(dict.fromkeys(taps))
        self.weights = weights
        self.preprocess = weights.preprocess_module()
        deepest = max(LAYER_NAMES.index(t) for t in self.taps)
        self.layers = nn.Sequential(_build_layers(LAYER_NAMES[: deepest + 1], weights, pooling))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.layers.to(memory_format=self.memory_format)
        self.precision = precision
        named = list(self.layers.named_children())
        split = LAYER_NAMES.index(precision.reduced_from) if precision.dtype is not None else len(named)
        self._full, self._reduced = named[:split], named[split:]
        self.requires_grad_(False)
        self.eval()

    def forward(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(rgb).contiguous(memory_format=self.memory_format)
        features: dict[str, torch.Tensor] = {}
        x = self._run(self._full, x, features)
        if self._reduced:
            with torch.autocast(x.device.type, dtype=self.precision.dtype):
                self._run(self._reduced, x, features)
        return features

    def _run(self, layers: list[tuple[str, nn.Module]], x: torch.Tensor, features: dict) -> torch.Tensor:
        for name, layer in layers:
            x = layer(x)
            if name in self.taps:
                features[name] = x
        return x


def _build_layers(names: Sequence[str], weights: WeightsSource, pooling: Pooling) -> OrderedDict:
    params = weights.conv_params()
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = 3
    for name in names:
        if name.startswith("conv"):
            weight, bias = params[name]
            conv = nn.Conv2d(in_channels, weight.shape[0], kernel_size=3, padding=1)
            if conv.weight.shape != weight.shape:
                raise InputError(f"{name} has shape {tuple(weight.shape)}, VGG19 needs {tuple(conv.weight.shape)}", weights.file)
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)
            layers[name] = conv
            in_channels = weight.shape[0]
        elif name.startswith("relu"):
            # Not in-place: conv taps (e.g. conv4_2) must keep their pre-activation values.
            layers[name] = nn.ReLU(inplace=False)
        else:
            layers[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
    return layers
