"""Gatys et al. style transfer of one image: the single entry point every surface calls.

stylize_image(content, styles, settings, callback) -> StylizeResult
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from . import color
from .device import network_precision, resolve_device, tune_backends
from .errors import InputError, StylizeError
from .images import ImageLike, as_tensor, fit_long_edge, resize, resize_long_edge, to_pil
from .memory import fitting_tile_size
from .losses import ContentLoss, GatysLoss, LossTerms, StyleLoss, TemporalTarget, gram_matrix
from .settings import StyleSettings
from .tiles import Box, feather, tile_boxes
from .vgg import VGGFeatures
from .weights import resolve_weights

TILE_OVERLAP = 64
EARLY_STOP_WINDOW = 10
STYLE_CACHE_SIZE = 32


@dataclass(frozen=True)
class Style:
    """A style image and its weight in the blend (weights are normalised to sum to 1)."""

    image: ImageLike
    weight: float = 1.0


StyleLike = ImageLike | Style | tuple[ImageLike, float]


@dataclass
class Progress:
    """Handed to the callback after every optimizer step. The losses stay on the device
    until a callback reads them, so a callback that does not read them never stalls a GPU."""

    level: int  # 0-based index of the current scale
    levels: int
    tile: int  # 0-based index of the current tile at this level
    tiles: int
    iteration: int  # 1-based step within the current tile
    iterations: int
    height: int
    width: int
    terms: LossTerms
    elapsed: float
    image: torch.Tensor | None  # the current image (or tile), on the device; a live view, not a copy

    @functools.cached_property
    def losses(self) -> dict[str, float]:
        return self.terms.as_floats()

    def portable(self) -> "Progress":
        """A light copy for another process: the losses on the CPU, no image."""
        return dataclasses.replace(self, terms=self.terms.to("cpu"), image=None)


Callback = Callable[[Progress], None]


@dataclass
class StylizeResult:
    image: Image.Image
    tensor: torch.Tensor  # [1, 3, H, W] in [0, 1], on the CPU
    losses: dict[str, float]  # final weighted losses: total, content, style, tv
    iterations: int  # optimizer steps over all levels and tiles
    seconds: float
    device: str
    stopped_early: bool
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (height, width) of each level


@dataclass
class _PreparedStyle:
    tensor: torch.Tensor
    weight: float
    key: str


@dataclass
class _Level:
    index: int
    levels: int
    iterations: int
    tolerance: float


def stylize_image(
    content: ImageLike,
    styles: StyleLike | Sequence[StyleLike],
    settings: StyleSettings | None = None,
    callback: Callback | None = None,
) -> StylizeResult:
    """Repaint `content` in the blended style of `styles`."""
    settings = settings or StyleSettings()
    return get_stylizer(settings).stylize(content, styles, settings, callback)


def get_stylizer(settings: StyleSettings) -> "Stylizer":
    device = resolve_device(settings.device)
    taps = tuple(dict.fromkeys(settings.content_layers + settings.style_layers))
    return _cached_stylizer(settings.weights, settings.pooling, taps, str(device), settings.precision, settings.compile)


@functools.lru_cache(maxsize=4)
def _cached_stylizer(weights: str, pooling: str, taps: tuple[str, ...], device: str, precision: str, compile: bool) -> "Stylizer":
    return Stylizer(weights, pooling, taps, torch.device(device), precision, compile)


class Stylizer:
    """One VGG19 on one device, with the style Gram matrices it has computed so far.

    On CUDA the network runs channels-last, under bf16 autocast after its second block
    (precision auto), while Gram matrices and losses are computed in fp32 outside it."""

    def __init__(self, weights: str, pooling: str, taps: Sequence[str], device: torch.device,
                 precision: str = "auto", compile: bool = False):
        self.device = device
        self.weights = resolve_weights(weights)
        self.precision = network_precision(device, precision)
        tune_backends(device)
        channels_last = device.type == "cuda"  # cuDNN's fast NHWC kernels; no gain on CPU
        self.model = VGGFeatures(self.weights, taps, pooling, channels_last, self.precision).to(device)
        self._network = torch.compile(self.model) if compile else self.model
        self._gram_cache: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()

    def features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG activations at the network's precision."""
        return self._network(image)

    # -- public -----------------------------------------------------------------
    def stylize(self, content: ImageLike, styles, settings: StyleSettings, callback: Callback | None = None) -> StylizeResult:
        return self.stylize_batch([content], styles, settings, callback)[0]

    def stylize_batch(
        self, contents: Sequence[ImageLike], styles, settings: StyleSettings, callback: Callback | None = None
    ) -> list[StylizeResult]:
        """Optimise several same-sized contents together, each against its own loss."""
        started = time.perf_counter()
        torch.manual_seed(settings.seed)
        content_full = _stack_same_size(contents, settings)
        prepared = prepare_styles(styles)
        report = _Reporter(callback, started)
        image, sizes, steps, stopped, losses = None, [], 0, False, []
        levels = settings.scale_sizes()
        for index, long_edge in enumerate(levels):
            content_level = resize_long_edge(content_full, long_edge).to(self.device)
            sizes.append(tuple(content_level.shape[-2:]))
            level = _Level(index, len(levels), settings.iterations_at(index), settings.tolerance_at(index))
            image, level_steps, level_stopped, losses = self._stylize_level(
                image, content_level, prepared, settings, level, report
            )
            steps += level_steps
            stopped = stopped or level_stopped
        return self._results(image, content_level, settings, losses, steps, stopped, sizes, started)

    def stylize_frame(
        self,
        content: torch.Tensor,
        styles,
        settings: StyleSettings,
        start: torch.Tensor,
        iterations: int,
        temporal: TemporalTarget | None = None,
        callback: Callback | None = None,
    ) -> StylizeResult:
        """One video frame at its working size, warm-started from `start` (the previous
        output warped into this frame), optionally held to it by a temporal loss."""
        started = time.perf_counter()
        torch.manual_seed(settings.seed)
        content = content.to(self.device)
        if temporal is not None:
            warped, mask = temporal.warped.to(self.device), temporal.mask.to(self.device)
            if settings.preserve_color == "luminance":
                warped = color.luminance_image(warped)
            temporal = TemporalTarget(warped, mask, temporal.weight)
        if settings.preserve_color == "luminance":
            start = color.luminance_image(start)
        level = _Level(0, 1, iterations, settings.tolerance)
        image, steps, stopped, losses = self._stylize_level(
            start.to(self.device), content, prepare_styles(styles), settings, level, _Reporter(callback, started), temporal
        )
        return self._results(image, content, settings, losses, steps, stopped, [tuple(content.shape[-2:])], started)[0]

    def _results(self, image, content, settings, losses, steps, stopped, sizes, started) -> list[StylizeResult]:
        """One result per batch element, with the content's colours back in luminance mode."""
        if settings.preserve_color == "luminance":
            image = color.with_content_chroma(image, content)
        tensors = image.detach().clamp(0, 1).cpu().split(1)
        seconds = (time.perf_counter() - started) / len(tensors)  # a batch's time, shared out
        return [
            StylizeResult(to_pil(t), t, item_losses, steps, seconds, str(self.device), stopped, sizes)
            for t, item_losses in zip(tensors, losses)
        ]

    def evaluate(self, image: ImageLike, content: ImageLike, styles, settings: StyleSettings) -> dict[str, float]:
        """Losses of `image` against content and styles, as the optimizer would score them."""
        image_t = as_tensor(image).to(self.device)
        content_t = resize(as_tensor(content), tuple(image_t.shape[-2:])).to(self.device)
        if settings.preserve_color == "luminance":
            image_t, content_t = color.luminance_image(image_t), color.luminance_image(content_t)
        criterion = self._criterion(content_t, self._style_grams(prepare_styles(styles), content_t, settings), settings)
        with torch.no_grad():
            return criterion(image_t).as_floats()

    # -- one scale ----------------------------------------------------------------
    def _stylize_level(self, image, content, styles, settings, level: _Level, report: "_Reporter", temporal=None):
        if settings.preserve_color == "luminance":
            content = color.luminance_image(content)
        grams = self._style_grams(styles, content, settings)
        image = self._initial_image(settings, content) if image is None else resize(image, tuple(content.shape[-2:]))
        height, width = content.shape[-2:]
        # Tiles smaller than asked only where the device's free memory could not hold them.
        tile_size = fitting_tile_size(self, settings.tile_size, content.shape[0])
        boxes = tile_boxes(height, width, tile_size, TILE_OVERLAP)
        if len(boxes) == 1:
            criterion = self._criterion(content, grams, settings, temporal)
            return self._optimize(image, criterion, settings, level, report.at(level, 0, 1, height, width))
        return self._optimize_tiles(image, content, grams, settings, level, boxes, report, temporal)

    def _optimize_tiles(self, image, content, grams, settings, level: _Level, boxes: list[Box], report: "_Reporter", temporal=None):
        height, width = content.shape[-2:]
        blended = torch.zeros_like(image)
        coverage = torch.zeros_like(image[:, :1])
        steps, stopped, tile_losses = 0, False, []
        for index, (top, left, h, w) in enumerate(boxes):
            window = (..., slice(top, top + h), slice(left, left + w))
            criterion = self._criterion(content[window], grams, settings, temporal.crop(window) if temporal else None)
            tile_report = report.at(level, index, len(boxes), h, w)
            tile, tile_steps, tile_stopped, losses = self._optimize(image[window], criterion, settings, level, tile_report)
            mask = feather((top, left, h, w), height, width, TILE_OVERLAP, image.device)
            blended[window] += tile * mask
            coverage[window] += mask
            steps, stopped = steps + tile_steps, stopped or tile_stopped
            tile_losses.append(losses)
        mean_losses = [
            {k: sum(tile[i][k] for tile in tile_losses) / len(tile_losses) for k in tile_losses[0][i]}
            for i in range(image.shape[0])
        ]
        return blended / coverage, steps, stopped, mean_losses

    def _optimize(self, start: torch.Tensor, criterion: GatysLoss, settings, level: _Level, report):
        image = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        optimizer = _make_optimizer(image, settings)
        totals: list[torch.Tensor] = []  # stay on the device; read back once per EARLY_STOP_WINDOW steps
        latest: list[LossTerms] = []

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            terms = criterion(image)
            total = terms.total.sum()
            total.backward()
            latest[:] = [terms]
            return total

        stopped, steps = False, 0
        for steps in range(1, level.iterations + 1):
            optimizer.step(closure)
            with torch.no_grad():
                image.clamp_(0, 1)
            terms = latest[0].detached()
            totals = totals[-EARLY_STOP_WINDOW:] + [terms.total.sum()]
            report(steps, level.iterations, terms, image.detach())
            if steps % EARLY_STOP_WINDOW == 0 and _converged(torch.stack(totals).tolist(), level.tolerance, settings):
                stopped = True
                break
        result = image.detach().clamp(0, 1)
        with torch.no_grad():
            final = [criterion(result).as_floats(i) for i in range(result.shape[0])]
        _check_finite(sum(losses["total"] for losses in final), settings)
        return result, steps, stopped, final

    # -- targets --------------------------------------------------------------------
    def _criterion(self, content: torch.Tensor, grams: dict[str, torch.Tensor], settings, temporal=None) -> "_Criterion":
        with torch.no_grad():
            features = self.features(content)
        content_losses = {name: ContentLoss(features[name]) for name in settings.content_layers}
        style_losses = {name: StyleLoss(grams[name]) for name in settings.style_layers}
        loss = GatysLoss(
            content_losses, style_losses, settings.layer_weights(),
            settings.content_weight, settings.style_weight, settings.tv_weight, temporal,
        )
        return _Criterion(self.features, loss)

    def _style_grams(self, styles: list[_PreparedStyle], content: torch.Tensor, settings) -> dict[str, torch.Tensor]:
        """Blend of each style's Gram matrices, weighted; each style's Grams are cached."""
        if settings.preserve_color != "none" and content.shape[0] > 1:
            # Colour modes recolour the style after each content: one target per image.
            per_image = [self._style_grams(styles, content[i : i + 1], settings) for i in range(content.shape[0])]
            return {name: torch.cat([grams[name] for grams in per_image]) for name in settings.style_layers}
        long_edge = max(1, round(max(content.shape[-2:]) * settings.style_scale))
        blended: dict[str, torch.Tensor] = {}
        for style in styles:
            grams = self._grams_of(style, long_edge, content, settings)
            for name in settings.style_layers:
                blended[name] = blended.get(name, 0) + style.weight * grams[name]
        return blended

    def _grams_of(self, style: _PreparedStyle, long_edge: int, content: torch.Tensor, settings) -> dict[str, torch.Tensor]:
        # Colour modes recolour the style after the content, so the content joins the key.
        content_key = _tensor_key(content) if settings.preserve_color != "none" else ""
        key = (style.key, long_edge, settings.preserve_color, content_key, settings.tile_size)
        if key not in self._gram_cache:
            image = self._style_image(style.tensor, long_edge, content, settings.preserve_color)
            self._gram_cache[key] = self._tiled_grams(image, settings.tile_size)
            while len(self._gram_cache) > STYLE_CACHE_SIZE:
                self._gram_cache.popitem(last=False)
        self._gram_cache.move_to_end(key)
        return self._gram_cache[key]

    def _style_image(self, style: torch.Tensor, long_edge: int, content: torch.Tensor, mode: str) -> torch.Tensor:
        image = resize_long_edge(style, long_edge).to(self.device)
        if mode == "histogram":
            return color.match_color_histogram(image, content)
        if mode == "luminance":
            return color.match_luminance(color.luminance_image(image), content)
        return image

    def _tiled_grams(self, image: torch.Tensor, tile: int) -> dict[str, torch.Tensor]:
        # Grams are averages over positions, so tiles combine weighted by their area.
        sums: dict[str, torch.Tensor] = {}
        total_area = 0
        for top, left, h, w in tile_boxes(*image.shape[-2:], tile):
            with torch.no_grad():
                features = self.features(image[..., top : top + h, left : left + w])
            for name, value in features.items():
                sums[name] = sums.get(name, 0) + gram_matrix(value) * (h * w)
            total_area += h * w
        return {name: value / total_area for name, value in sums.items()}

    def _initial_image(self, settings: StyleSettings, content: torch.Tensor) -> torch.Tensor:
        if settings.init == "content":
            return content.clone()
        if settings.init == "noise":
            generator = torch.Generator().manual_seed(settings.seed)
            return torch.rand(content.shape, generator=generator).to(content.device)
        start = resize(as_tensor(settings.init), tuple(content.shape[-2:])).to(content.device)
        return color.luminance_image(start) if settings.preserve_color == "luminance" else start


class _Criterion:
    """Image -> weighted loss terms. The losses run outside autocast: fp32 Gram matrices."""

    def __init__(self, features: Callable[[torch.Tensor], dict[str, torch.Tensor]], loss: GatysLoss):
        self.features = features
        self.loss = loss

    def __call__(self, image: torch.Tensor) -> LossTerms:
        return self.loss(image, self.features(image))


class _Reporter:
    def __init__(self, callback: Callback | None, started: float):
        self.callback = callback
        self.started = started

    def at(self, level: _Level, tile: int, tiles: int, height: int, width: int):
        def report(iteration: int, iterations: int, terms: LossTerms, image: torch.Tensor) -> None:
            if self.callback is not None:
                elapsed = time.perf_counter() - self.started
                self.callback(Progress(level.index, level.levels, tile, tiles, iteration, iterations, height, width, terms, elapsed, image))

        return report


def _stack_same_size(contents: Sequence[ImageLike], settings: StyleSettings) -> torch.Tensor:
    tensors = [as_tensor(content) for content in contents]
    shapes = {tuple(t.shape[-2:]) for t in tensors}
    if len(shapes) > 1:
        sized = {fit_long_edge(*shape, long_edge) for shape in shapes for long_edge in settings.scale_sizes()}
        if len(sized) > len(settings.scale_sizes()):
            raise InputError(f"a batch needs contents of one size after resizing; got {sorted(shapes)}")
        target = max(shapes)
        tensors = [resize(t, target) for t in tensors]
    return torch.cat(tensors)


def _is_single_style(styles) -> bool:
    if isinstance(styles, (Style, str, Path)) or not isinstance(styles, Sequence):
        return True
    # A bare (image, weight) pair, as opposed to a tuple of styles.
    return isinstance(styles, tuple) and len(styles) == 2 and isinstance(styles[1], (int, float))


def prepare_styles(styles) -> list[_PreparedStyle]:
    """Load, weigh and fingerprint styles once; already prepared styles pass through."""
    if isinstance(styles, list) and styles and all(isinstance(s, _PreparedStyle) for s in styles):
        return styles
    if _is_single_style(styles):
        styles = [styles]
    parsed = [s if isinstance(s, Style) else Style(*s) if isinstance(s, tuple) else Style(s) for s in styles]
    if not parsed:
        raise InputError("at least one style image is needed")
    if any(s.weight < 0 for s in parsed) or sum(s.weight for s in parsed) <= 0:
        raise InputError("style weights must be non-negative and not all zero")
    total = sum(s.weight for s in parsed)
    prepared = []
    for style in parsed:
        tensor = as_tensor(style.image)
        prepared.append(_PreparedStyle(tensor, style.weight / total, _tensor_key(tensor)))
    return prepared


def _tensor_key(tensor: torch.Tensor) -> str:
    data = tensor.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest() + str(tuple(tensor.shape))


def _make_optimizer(image: torch.Tensor, settings: StyleSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam([image], lr=settings.lr)
    # One L-BFGS iteration per step() call keeps history across calls and lets us
    # report progress and stop early between iterations. Our own tolerance decides convergence.
    return torch.optim.LBFGS([image], lr=settings.lr, max_iter=1, history_size=50, tolerance_grad=-1, tolerance_change=-1)


def _converged(history: list[float], tolerance: float, settings: StyleSettings) -> bool:
    """The mean improvement per step over the last window fell below the tolerance."""
    _check_finite(history[-1], settings)
    if tolerance <= 0 or len(history) <= EARLY_STOP_WINDOW:
        return False
    before, now = history[-EARLY_STOP_WINDOW - 1], history[-1]
    return (before - now) < tolerance * EARLY_STOP_WINDOW * abs(before)


def _check_finite(total: float, settings: StyleSettings) -> None:
    if not math.isfinite(total):
        raise StylizeError(
            f"optimisation diverged (loss is {total}): lower learning_rate (now {settings.lr}) or try optimizer adam"
        )

