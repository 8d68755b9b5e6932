"""The feed-forward stylization network: trained once per painting, then one forward pass a frame.

The architecture comes from a small table, `FastNetSpec`, rather than from code, so that
designs can be built side by side and compared (bench/fastnet_speed.py), and so that a model
file can say exactly which network its tensors belong to (its spec is stored as JSON in the
file's metadata, see `model_file`). Two designs are named in `DESIGNS`:

- `lean`, the default, for real time on a CPU. PixelUnshuffle by 4 turns the picture into
  48 channels at 1/4 of its resolution, losslessly; every convolution then runs on 1/16 of
  the positions, which is where a CPU spends its time. A few 3x3 conv + instance norm + ReLU
  layers and residual blocks at a small width follow, then a conv to 3 x 16 channels that
  PixelShuffle(4) turns back into full-resolution pixels.
- `johnson`, the network of Johnson et al. (2016) as pytorch/examples builds it (c9s1-32,
  d64, d128, five residual blocks of 128, two nearest-upsample + conv layers, c9s1-3), kept
  to measure the lean design against. Its output goes through a sigmoid, which is the paper's
  scaled tanh (tanh(x) = 2 sigmoid(2x) - 1) moved to [0, 1].

Both use reflection padding (zero padding darkens the borders of stylized frames) and
instance norm with learnt scale and shift (Ulyanov et al.: the normalisation that makes
feed-forward stylization work, since contrast is normalised per image).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Down = Literal["unshuffle", "conv"]
Up = Literal["shuffle", "nearest"]
Norm = Literal["instance", "none"]
Output = Literal["residual", "sigmoid"]

# Bounds on a spec, so that a model file's metadata cannot ask for a network too large to build.
MAX_WIDTH = 1024
MAX_BLOCKS = 64
MAX_FACTOR = 16
MAX_KERNEL = 15
# How far from 0 and 1 the input is held before its logit is taken (`residual` output):
# logit(1e-3) = -6.9, so the darkest and brightest pixels stay reachable by the network.
LOGIT_EPS = 1e-3


@dataclass(frozen=True)
class FastNetSpec:
    """One architecture. Every field is stored in the model file, so none may change meaning.

    width:  channels at the lowest resolution, where the residual blocks work.
    blocks: residual blocks (conv-norm-ReLU-conv-norm, plus the block's input).
    factor: how many times smaller the lowest resolution is than the picture (a power of 2).
    down:   how the picture gets there: `unshuffle` (space-to-depth, no arithmetic, then two
            3x3 convs at low resolution) or `conv` (a full-resolution conv of `edge_kernel`,
            then one stride-2 conv per halving, doubling the channels, as Johnson et al.).
    up:     and back: `shuffle` (two 3x3 convs, the second to 3 x factor^2 channels, then
            depth-to-space) or `nearest` (nearest-neighbour x2 + 3x3 conv per doubling,
            halving the channels, then a full-resolution conv of `edge_kernel` to RGB; the
            upsample-then-convolve that avoids transposed convolutions' checkerboards).
    norm:   `instance` (affine instance norm after every conv but the last) or `none`.
    output: `residual`: sigmoid(logit(input) + the network's output), or `sigmoid`: the
            sigmoid of the network's output. See `FastNet` for why lean uses `residual`.
    edge_kernel: kernel of the full-resolution convs of the `conv` and `nearest` paths.
    """

    width: int = 32
    blocks: int = 5
    factor: int = 4
    down: Down = "unshuffle"
    up: Up = "shuffle"
    norm: Norm = "instance"
    output: Output = "residual"
    edge_kernel: int = 3

    def __post_init__(self):
        choices = {"down": Down, "up": Up, "norm": Norm, "output": Output}
        for name, kind in choices.items():
            allowed = kind.__args__
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name, low, high in (("width", 1, MAX_WIDTH), ("blocks", 0, MAX_BLOCKS), ("factor", 1, MAX_FACTOR),
                                ("edge_kernel", 1, MAX_KERNEL)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} {value!r} is not a whole number from {low} to {high}")
        if self.factor & (self.factor - 1):
            raise ValueError(f"factor {self.factor} is not a power of 2")
        if self.edge_kernel % 2 == 0:
            raise ValueError(f"edge_kernel {self.edge_kernel} is not odd")
        if (self.down == "conv" or self.up == "nearest") and self.width % self.factor:
            raise ValueError(f"width {self.width} is not a multiple of factor {self.factor}, "
                             f"which the {self.down if self.down == 'conv' else self.up} path halves it by")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> "FastNetSpec":
        """A spec from a model file's metadata: every field, and no other, so that a file is never
        read with today's defaults standing in for what it did not say. ValueError otherwise."""
        if not isinstance(values, dict):
            raise ValueError(f"expected a JSON object of {', '.join(_FIELDS)}, got {type(values).__name__}")
        unknown = sorted(set(values) - set(_FIELDS))
        missing = [name for name in _FIELDS if name not in values]
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        if missing:
            raise ValueError(f"missing field {missing[0]!r}")
        return cls(**values)

    @property
    def design(self) -> str:
        """The name in `DESIGNS` this spec is, else "custom"."""
        return next((name for name, spec in DESIGNS.items() if spec == self), "custom")

    def describe(self) -> str:
        return (f"{self.design}: width {self.width}, {self.blocks} residual blocks at 1/{self.factor} resolution, "
                f"{self.down} down, {self.up} up, {self.norm} norm, {self.output} output"
                + (f", {self.edge_kernel}x{self.edge_kernel} edge convs" if self.down == "conv" or self.up == "nearest" else ""))


_FIELDS = tuple(field.name for field in dataclasses.fields(FastNetSpec))

DESIGNS: dict[str, FastNetSpec] = {
    "lean": FastNetSpec(),
    "johnson": FastNetSpec(width=128, blocks=5, factor=4, down="conv", up="nearest", norm="instance",
                           output="sigmoid", edge_kernel=9),
}
DEFAULT_DESIGN = "lean"


class ConvLayer(nn.Module):
    """Reflection-padded convolution, then instance norm and ReLU unless told otherwise. The conv
    has no bias when a norm follows it: the norm subtracts the mean, bias and all."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1,
                 norm: Norm = "instance", relu: bool = True):
        super().__init__()
        normalised = norm == "instance"
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride, padding=kernel // 2,
                              padding_mode="reflect", bias=not normalised)
        self.norm = nn.InstanceNorm2d(channels_out, affine=True) if normalised else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.conv(x)))


class UpsampleConv(nn.Module):
    """Nearest-neighbour x2, then a conv: upsampling without transposed convolutions' checkerboards."""

    def __init__(self, channels_in: int, channels_out: int, norm: Norm):
        super().__init__()
        self.layer = ConvLayer(channels_in, channels_out, 3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: Norm):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3, norm=norm)
        self.conv2 = ConvLayer(channels, channels, 3, norm=norm, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class FastNet(nn.Module):
    """[B, 3, H, W] in [0, 1] to the same shape in [0, 1], for any H and W.

    The picture is padded (reflected) up to a multiple of `factor`, at least two low-resolution
    pixels, so that the down and up paths return exactly its size; the padding is cropped off.

    Why `residual` output for the lean design: sigmoid(logit(x) + r) starts as the input
    itself (its last conv starts at zero), so training begins from the photo and only has to
    learn the painting's changes; the input's full-resolution detail reaches the output
    directly instead of through the 1/4-resolution path; and, unlike clamping x + r to [0, 1],
    the sigmoid keeps a gradient at every pixel, so a pixel pushed past white can come back.
    """

    def __init__(self, spec: FastNetSpec):
        super().__init__()
        self.spec = spec
        f, width, norm = spec.factor, spec.width, spec.norm
        halvings = int(math.log2(f))
        if spec.down == "unshuffle":
            head = [nn.PixelUnshuffle(f), ConvLayer(3 * f * f, width, 3, norm=norm), ConvLayer(width, width, 3, norm=norm)]
        else:
            channels = width // f
            head = [ConvLayer(3, channels, spec.edge_kernel, norm=norm)]
            for _ in range(halvings):
                head.append(ConvLayer(channels, channels * 2, 3, stride=2, norm=norm))
                channels *= 2
        if spec.up == "shuffle":
            tail = [ConvLayer(width, width, 3, norm=norm), ConvLayer(width, 3 * f * f, 3, norm="none", relu=False),
                    nn.PixelShuffle(f)]
        else:
            channels = width
            tail = []
            for _ in range(halvings):
                tail.append(UpsampleConv(channels, channels // 2, norm))
                channels //= 2
            tail.append(ConvLayer(channels, 3, spec.edge_kernel, norm="none", relu=False))
        self.head = nn.Sequential(*head)
        self.body = nn.Sequential(*(ResidualBlock(width, norm) for _ in range(spec.blocks)))
        self.tail = nn.Sequential(*tail)
        if spec.output == "residual":
            last = next(m for m in reversed(list(self.tail.modules())) if isinstance(m, nn.Conv2d))
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)
        # The smallest padded side: two pixels at the lowest resolution (a 3x3 reflection needs
        # two), and more than half the edge kernel at full resolution.
        self.min_side = max(2 * f, f * math.ceil((spec.edge_kernel // 2 + 1) / f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W], got {list(x.shape)}")
        height, width = x.shape[-2:]
        padded = _pad(x, self._side(height), self._side(width))
        r = self.tail(self.body(self.head(padded)))[..., :height, :width]
        if self.spec.output == "residual":
            return torch.sigmoid(torch.logit(x, eps=LOGIT_EPS) + r)
        return torch.sigmoid(r)

    def _side(self, side: int) -> int:
        f = self.spec.factor
        return max(self.min_side, f * math.ceil(side / f))


def _pad(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bottom and right padding up to height x width: reflected where the image is large enough
    (reflection needs more pixels than it adds), repeated where it is smaller than that."""
    bottom, right = height - x.shape[-2], width - x.shape[-1]
    if not bottom and not right:
        return x
    if bottom < x.shape[-2] and right < x.shape[-1]:
        return F.pad(x, (0, right, 0, bottom), mode="reflect")
    return F.pad(x, (0, right, 0, bottom), mode="replicate")


def build_fastnet(spec: FastNetSpec | str = DEFAULT_DESIGN) -> FastNet:
    """The network of a spec, or of a design's name in `DESIGNS`, freshly initialised."""
    if isinstance(spec, str):
        if spec not in DESIGNS:
            raise ValueError(f"unknown design {spec!r}; designs: {', '.join(DESIGNS)}")
        spec = DESIGNS[spec]
    return FastNet(spec)


def expected_shapes(spec: FastNetSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor a network of `spec` holds and its shape, without allocating it (built on the
    meta device): how a model file's tensors are checked before any of them is read."""
    with torch.device("meta"):
        network = FastNet(spec)
    return {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
