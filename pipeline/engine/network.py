"""One VGG19 on one device, built once per network spec and kept with the style Gram
matrices it has computed, so a night of photos in one style loads and measures it once."""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch

from ..settings import StyleSettings
from .device import network_precision, resolve_device, tune_backends
from .losses import gram_matrix
from .tiles import tile_boxes
from .vgg import VGGFeatures
from .weights import resolve_weights

STYLE_CACHE_SIZE = 32
CACHED_NETWORKS = 4

Grams = dict[str, torch.Tensor]
Features = dict[str, torch.Tensor]  # VGG activations by tap name


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that makes one network differ from another; nothing else in the settings does."""

    weights: str
    pooling: str
    taps: tuple[str, ...]
    device: str  # resolved: "cuda:0", "cpu"
    precision: str
    compile: bool

    @classmethod
    def of(cls, settings: StyleSettings) -> "NetworkSpec":
        taps = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
        device = str(resolve_device(settings.device))
        return cls(settings.weights, settings.pooling, taps, device, settings.precision, settings.compile)


def network_for(settings: StyleSettings) -> "Network":
    return _cached_network(NetworkSpec.of(settings))


@functools.lru_cache(maxsize=CACHED_NETWORKS)
def _cached_network(spec: NetworkSpec) -> "Network":
    return Network(spec)


class Network:
    """On CUDA the network runs channels-last, under bf16 autocast after its second block
    (precision auto), while Gram matrices and losses are computed in fp32 outside it."""

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        self.device = torch.device(spec.device)
        self.weights = resolve_weights(spec.weights)
        self.precision = network_precision(self.device, spec.precision)
        tune_backends(self.device)
        channels_last = self.device.type == "cuda"  # cuDNN's fast NHWC kernels; no gain on CPU
        self.model = VGGFeatures(self.weights, spec.taps, spec.pooling, channels_last, self.precision).to(self.device)
        self._forward = torch.compile(self.model) if spec.compile else self.model
        self._grams: OrderedDict[tuple, Grams] = OrderedDict()

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG activations at the network's precision."""
        return self._forward(image)

    def style_grams(self, key: tuple, style_image: Callable[[], torch.Tensor], tile_size: int) -> Grams:
        """The Gram matrices of every tap for the style image `key` names; made (by
        `style_image`) and measured only the first time that key is asked for."""
        if key not in self._grams:
            self._grams[key] = self._tiled_grams(style_image(), tile_size)
            while len(self._grams) > STYLE_CACHE_SIZE:
                self._grams.popitem(last=False)
        self._grams.move_to_end(key)
        return self._grams[key]

    def _tiled_grams(self, image: torch.Tensor, tile: int) -> Grams:
        # Grams are averages over positions, so tiles combine weighted by their area.
        sums: Grams = {}
        total_area = 0
        for top, left, h, w in tile_boxes(*image.shape[-2:], tile):
            with torch.no_grad():
                features = self.features(image[..., top : top + h, left : left + w])
            for name, value in features.items():
                sums[name] = sums.get(name, 0) + gram_matrix(value) * (h * w)
            total_area += h * w
        return {name: value / total_area for name, value in sums.items()}
