"""The one typed object holding every stylization setting. The CLI and the
manifest read their defaults from here, so the surfaces never drift apart."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .vgg19 import check_layers

Precision = Literal["auto", "fp32", "mixed", "bf16"]
Optimizer = Literal["lbfgs", "adam"]
ColorMode = Literal["none", "luminance", "histogram"]
DEFAULT_LEARNING_RATE: dict[str, float] = {"lbfgs": 1.0, "adam": 0.02}
# With scales unset: sizes from 256 px start at half size (measured: the same quality in
# less time; see README "Speed"), and each doubling above 512 px adds a level.
AUTO_SCALE_BASE = 512
AUTO_SINGLE_BELOW = 256
COARSE_TOLERANCE_FACTOR = 10
# The largest output: levels above tile_size are optimised tile by tile, but the whole image,
# its content and their blend stay in memory (about 4 GB at 8192 px).
MAX_SIZE = 8192
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
# Bounds far past any real use (the hq preset takes 600 steps; weights are single digits to hundreds),
# so that a typo such as 10**30 is an error naming its key, not a run that never ends or overflows.
MAX_ITERATIONS = 100_000
MAX_WEIGHT = 1e6
MAX_LEARNING_RATE = 100.0
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed takes
MAX_FRAMES = 10_000_000  # frames of a clip: over four days at 25 fps
MAX_SECONDS = 1_000_000.0  # seconds into a clip: over eleven days
MAX_LONG_TERM_JUMP = 1000  # frames back: each frame up to the longest jump stays decoded in memory
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT)]
# strength: the default, and how many times stronger the style term gets from it to strength 1
# (and weaker down to 0). The style term is the style loss over the unstylized photo's, so a
# strength weighs the same share of the way to the painting whatever the painting, photo or size.
DEFAULT_STRENGTH = 0.5
STRENGTH_RANGE = 10.0
# Settings that change where or how fast the work runs, not what it produces.
SPEED_ONLY_SETTINGS = frozenset({"device", "compile"})


class StyleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    size: int = Field(512, gt=15, le=MAX_SIZE, description="long edge of the output in pixels")
    iterations: int = Field(500, ge=0, le=MAX_ITERATIONS, description="optimizer steps at the first (coarsest) scale")
    refine_iterations: int | None = Field(None, ge=0, le=MAX_ITERATIONS, description="steps at each later scale (default: iterations/2)")
    scales: int | None = Field(None, ge=1, le=8, description="coarse-to-fine levels, each twice the last (default: auto, from half size)")
    tile_size: int = Field(1024, ge=64, le=MAX_SIZE, description="levels larger than this are optimised in overlapping tiles")
    optimizer: Optimizer = "lbfgs"
    learning_rate: float | None = Field(None, gt=0, le=MAX_LEARNING_RATE, description="default: 1.0 for lbfgs, 0.02 for adam")
    content_weight: float = Field(1.0, ge=0, le=MAX_WEIGHT)
    style_weight: float = Field(3.0, ge=0, le=MAX_WEIGHT, description="experts: the style term's weight at the default strength (the style loss over the photo's)")
    # 10 rather than 1: at small sizes strokes one or two pixels wide shimmer as a clip moves (README, "What helped" in the video section).
    tv_weight: float = Field(10.0, ge=0, le=MAX_WEIGHT, description="total variation: smooths strokes one or two pixels wide")
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    style_layer_weights: tuple[Weight, ...] | None = Field(None, description="one per style layer (default: equal)")
    strength: float = Field(DEFAULT_STRENGTH, ge=0, le=1, description="how much of the painting: 0 a light touch, 1 the most; means the same across paintings and sizes")
    style_scale: float = Field(1.0, gt=0, le=4, description="style image size relative to the content")
    preserve_color: ColorMode = "none"
    init: str = Field("content", description="content, noise, or a path to an image")
    seed: int = Field(0, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    tolerance: float = Field(1e-4, ge=0, description="stop when the loss improves less than this per step (0: never)")
    pooling: Literal["max", "avg"] = "max"
    weights: str = Field("caffe", description="caffe, torchvision, or a path to a VGG19 state dict")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Precision = Field("auto", description="network arithmetic: fp32, bf16, mixed (bf16 after block 2), or auto (mixed on CUDA GPUs with bf16, else fp32)")
    compile: bool = Field(False, description="torch.compile the network: pays on long GPU runs, costs start-up time")

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, device):
            raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps")
        return device

    @model_validator(mode="after")
    def _check(self) -> "StyleSettings":
        check_layers(self.content_layers, "content_layers")
        check_layers(self.style_layers, "style_layers")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ValueError(
                f"style_layer_weights has {len(self.style_layer_weights)} values for {len(self.style_layers)} style_layers"
            )
        return self

    def output_identity(self) -> dict:
        """The settings that decide the picture, for keys that say whether an output is current."""
        return self.model_dump(mode="json", exclude=set(SPEED_ONLY_SETTINGS))

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[self.optimizer]

    def layer_weights(self) -> dict[str, float]:
        weights = self.style_layer_weights or (1.0,) * len(self.style_layers)
        total = sum(weights) or 1.0
        return {layer: w / total for layer, w in zip(self.style_layers, weights)}

    def style_balance(self) -> float:
        """The style term's weight against content_weight: style_weight, times STRENGTH_RANGE for
        each 0.5 of strength above the default (divided, below it)."""
        return self.style_weight * STRENGTH_RANGE ** (2 * (self.strength - DEFAULT_STRENGTH))

    def scale_sizes(self) -> list[int]:
        """Long edge of each level, coarsest first, ending at `size`."""
        levels = self.scales or self._auto_levels()
        return [max(16, round(self.size / 2 ** (levels - 1 - i))) for i in range(levels)]

    def _auto_levels(self) -> int:
        if self.size < AUTO_SINGLE_BELOW:
            return 1
        return 2 + max(0, math.ceil(math.log2(self.size / AUTO_SCALE_BASE)))

    def style_edge(self, content_edge: int) -> int:
        """Long edge of the style image against a content of this long edge."""
        return max(1, round(content_edge * self.style_scale))

    def tolerance_at(self, level: int) -> float:
        """Levels before the last only prepare its start, so they stop sooner."""
        return self.tolerance if level == len(self.scale_sizes()) - 1 else self.tolerance * COARSE_TOLERANCE_FACTOR

    def iterations_at(self, level: int) -> int:
        if level == 0:
            return self.iterations
        return self.refine_iterations if self.refine_iterations is not None else self.iterations // 2


@dataclass(frozen=True)
class Style:
    """A style image (a path, or an image in memory) and its weight in the blend
    (weights are normalised to sum to 1)."""

    image: Any  # a path, a PIL image, an HxWx3 array or a [1, 3, H, W] tensor in [0, 1]
    weight: float = 1.0


def settings_from(values: dict, where: str = "settings", model: type[BaseModel] | None = None):
    """Build settings (StyleSettings unless another model is named), turning
    validation failures into one actionable line."""
    try:
        return (model or StyleSettings)(**values)
    except ValidationError as error:
        raise InputError(f"{where}: {validation_problems(error)[0]}") from None


def validation_problems(error: ValidationError, prefix: str = "", only: set[str] | None = None) -> list[str]:
    """Each problem pydantic found, as `location: message` (`jobs[2].style[1].path: ...`);
    with `only`, just those of these keys (the others are reported where they were set)."""
    problems = []
    for item in error.errors():
        if only is not None and item["loc"] and item["loc"][0] not in only:
            continue
        location = prefix
        for part in item["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return problems


VideoCodec = Literal["h264", "h265", "vp9", "prores"]


class VideoSettings(BaseModel):
    """How clips are stylized and encoded; `video:` in a manifest, options of `stylize video`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    frame_iterations: int = Field(50, ge=0, le=MAX_ITERATIONS, description="steps for each frame after the first (which gets `iterations`)")
    temporal: bool = Field(True, description="warm-start from the warped previous output and penalise change (Ruder et al.)")
    # 75 (was 150): a firmer hold lets held pixels drift further under a pan before a frame's steps correct them;
    # on bikes.mp4 and bigbuckbunny.mp4 75 gave frames closer to photos and as steady along independent flows (README, "What helped" in the video section).
    temporal_weight: float = Field(75.0, ge=0, le=MAX_WEIGHT)
    long_term: tuple[int, ...] = Field((), description="also hold each pixel to the nearest of these earlier frames where it was visible, e.g. [10, 20, 40]")
    passes: int = Field(1, ge=1, le=100, description="passes over the clip, alternating direction (Ruder et al.'s multi-pass); each costs about as much as the first")
    photo_checks: int = Field(2, ge=0, le=MAX_FRAMES, description="frames also stylized as photos, to measure how the video's frames hold up (0: none)")
    scene_cut: float = Field(0.15, ge=0, description="mean colour change after motion compensation that starts a new shot (0: never)")
    max_frames: int | None = Field(None, ge=1, le=MAX_FRAMES)
    start: float = Field(0.0, ge=0, le=MAX_SECONDS, description="seconds into the clip")
    end: float | None = Field(None, gt=0, le=MAX_SECONDS, description="seconds into the clip (default: its end)")
    codec: VideoCodec = "h264"
    crf: int = Field(18, ge=0, le=63, description="constant quality: lower is better and larger")
    segment_frames: int = Field(900, ge=0, le=MAX_FRAMES, description="clips longer than this are cut into segments stylized in parallel (0: never)")
    segment_overlap: int = Field(24, ge=0, le=MAX_FRAMES, description="frames over which each later segment cross-fades in from the one before")
    segment_burn_in: int = Field(8, ge=0, le=MAX_FRAMES, description="frames each later segment stylizes before its cross-fade, then discards")

    @model_validator(mode="after")
    def _check(self) -> "VideoSettings":
        if self.end is not None and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if any(not 1 <= jump <= MAX_LONG_TERM_JUMP for jump in self.long_term):
            raise ValueError(f"long_term jumps must be 1 to {MAX_LONG_TERM_JUMP} frames, got {_listed(self.long_term)}")
        if self.segment_frames and self.segment_overlap >= self.segment_frames:
            raise ValueError(f"segment_overlap ({self.segment_overlap}) must be less than segment_frames ({self.segment_frames})")
        return self


def _listed(values: tuple, most: int = 8) -> str:
    shown = ", ".join(str(v) if len(str(v)) <= 20 else f"{str(v)[:20]}..." for v in values[:most])
    return f"[{shown}{', ...' if len(values) > most else ''}]"
