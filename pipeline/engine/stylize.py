"""Gatys et al. style transfer: the entry points every surface calls.

    stylize_image(content, styles, settings, callback) -> StylizeResult
    stylize_batch(contents, styles, settings, callback) -> [StylizeResult]   same-sized photos, one loss each
    stylize_frame(content, styles, settings, start, iterations, temporal, callback) -> StylizeResult
    evaluate(image, content, styles, settings) -> losses as the optimiser scores them

Each call takes its network from the settings (`network_for`), so the network and the
settings it runs with can never disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

from ..errors import InputError
from ..media.images import check_fits_network, fit_long_edge
from ..settings import MAX_WEIGHT, Style, StyleSettings
from .color import ColorPreservation
from .losses import EPS, ContentLoss, GatysLoss, LossTerms, StyleLoss, TemporalTarget
from .memory import fitting_tile_size
from .network import Features, Grams, Network, network_for
from .optimize import Level, Optimized, optimize
from .tensors import ImageLike, as_tensor, resize, resize_long_edge, to_pil
from .tiles import feather, tile_boxes

TILE_OVERLAP = 64

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


@dataclass(frozen=True)
class StyleTarget:
    """What the style term aims at: the blended Grams, and its weight for each image in the batch."""

    grams: Grams
    weight: torch.Tensor  # [B]


@dataclass(frozen=True)
class PreparedStyle:
    """A style loaded once: its pixels, its share of the blend, and a fingerprint for the Gram cache."""

    tensor: torch.Tensor
    weight: float
    key: str
    name: str  # its path, or "style N": what an error names


def stylize_image(content: ImageLike, styles: StyleLike | Sequence[StyleLike], settings: StyleSettings | None = None,
                  callback: Callback | None = None) -> StylizeResult:
    """Repaint `content` in the blended style of `styles`."""
    return stylize_batch([content], styles, settings, callback)[0]


def stylize_batch(contents: Sequence[ImageLike], styles, settings: StyleSettings | None = None,
                  callback: Callback | None = None) -> list[StylizeResult]:
    """Optimise several same-sized contents together, coarse to fine, each against its own loss."""
    settings = settings or StyleSettings()
    transfer = _Transfer(settings, styles, callback)
    full = _stack_same_size(contents, settings)
    levels = settings.scale_sizes()
    _check_fits_network(contents, full, transfer.styles, levels[0], settings)
    done: Optimized | None = None
    sizes: list[tuple[int, int]] = []
    for index, long_edge in enumerate(levels):
        content = resize_long_edge(full, long_edge).to(transfer.device)
        sizes.append(tuple(content.shape[-2:]))
        start = None if done is None else resize(done.image, sizes[-1])
        level = Level(index, len(levels), settings.iterations_at(index), settings.tolerance_at(index))
        done = transfer.solve(content, start, level).after(done)
    return transfer.results(done, content, sizes)


def stylize_frame(content: torch.Tensor, styles, settings: StyleSettings, start: torch.Tensor, iterations: int,
                  temporal: TemporalTarget | None = None, callback: Callback | None = None) -> StylizeResult:
    """One video frame at its working size, warm-started from `start` (the previous
    output warped into this frame), optionally held to it by a temporal loss."""
    transfer = _Transfer(settings, styles, callback)
    content = content.to(transfer.device)
    level = Level(0, 1, iterations, settings.tolerance)
    done = transfer.solve(content, transfer.colour.working(start.to(transfer.device)), level, temporal)
    return transfer.results(done, content, [tuple(content.shape[-2:])])[0]


def evaluate(image: ImageLike, content: ImageLike, styles, settings: StyleSettings) -> dict[str, float]:
    """Losses of `image` against content and styles, as the optimizer would score them."""
    transfer = _Transfer(settings, styles)
    image_t = transfer.colour.working(as_tensor(image).to(transfer.device))
    content_t = transfer.colour.working(resize(as_tensor(content), tuple(image_t.shape[-2:])).to(transfer.device))
    with torch.no_grad():
        return transfer.criterion(content_t, transfer.style_target(content_t))(image_t).as_floats()


def perceptual_objective(settings: StyleSettings, styles, picture_edge: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], LossTerms]:
    """The optimiser's objective as a function of (content batch, image batch): what a fast
    network trains on, so that `strength` and every weight mean the same in both engines.
    Contents that are crops of pictures of long edge `picture_edge` get the painting at the
    size the optimiser would give those pictures, so strokes come out as large as its do."""
    transfer = _Transfer(settings, styles)

    def objective(content: torch.Tensor, image: torch.Tensor) -> LossTerms:
        content = content.to(transfer.device)
        with torch.no_grad():  # once a step: both the content term and the style term's scale read them
            features = transfer.network.features(content)
        return transfer.criterion(content, transfer.style_target(content, picture_edge, features), features=features)(image)

    return objective


def prepare_styles(styles) -> list[PreparedStyle]:
    """Load, weigh and fingerprint styles once; already prepared styles pass through."""
    if isinstance(styles, list) and styles and all(isinstance(s, PreparedStyle) for s in styles):
        return styles
    parsed = as_styles(styles)
    if not parsed:
        raise InputError("at least one style image is needed")
    if not all(0 <= s.weight <= MAX_WEIGHT for s in parsed) or sum(s.weight for s in parsed) <= 0:  # NaN fails too
        raise InputError(f"style weights must be 0 to {MAX_WEIGHT:,.0f} (finite) and not all zero")
    total = sum(s.weight for s in parsed)
    prepared = []
    for number, style in enumerate(parsed, start=1):
        if isinstance(style.image, (str, Path)):
            tensor, key = _style_file(style.image)
            name = str(style.image)
        else:
            tensor = as_tensor(style.image)
            key, name = tensor_key(tensor), f"style {number}"
        prepared.append(PreparedStyle(tensor, style.weight / total, key, name))
    return prepared


def _style_file(path: str | Path) -> tuple[torch.Tensor, str]:
    """A painting's pixels and fingerprint, read once per process while the file is unchanged:
    a night of ten thousand photos in one style decodes it once, not ten thousand times."""
    try:
        stat = Path(path).stat()
    except OSError:
        return _load_style(str(path), -1, -1)  # load_image names what is wrong
    return _load_style(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_style(path: str, size: int, modified_ns: int) -> tuple[torch.Tensor, str]:
    tensor = as_tensor(path)
    return tensor, tensor_key(tensor)


def as_styles(styles) -> list[Style]:
    """A style, an image, an (image, weight) pair, or a sequence of them, as Style entries."""
    if _is_single_style(styles):
        styles = [styles]
    return [s if isinstance(s, Style) else Style(*s) if isinstance(s, tuple) else Style(s) for s in styles]


def tensor_key(tensor: torch.Tensor) -> str:
    """A fingerprint of an image's pixels and shape."""
    data = tensor.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha1(data).hexdigest() + str(tuple(tensor.shape))


class _Transfer:
    """One call's fixed parts: the settings, the network they name, the prepared styles,
    the colour mode and the progress callback."""

    def __init__(self, settings: StyleSettings, styles, callback: Callback | None = None):
        self.settings = settings
        self.network: Network = network_for(settings)
        self.device = self.network.device
        self.styles = prepare_styles(styles)
        self.colour = ColorPreservation(settings.preserve_color)
        self.callback = callback
        self.started = time.perf_counter()
        # Only the generators this call can use: seeding every CUDA device costs milliseconds where there is none.
        torch.default_generator.manual_seed(settings.seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(settings.seed)

    def solve(self, content: torch.Tensor, start: torch.Tensor | None, level: Level,
              temporal: TemporalTarget | None = None) -> Optimized:
        """One scale: the whole image, or overlapping tiles where it is larger than tile_size."""
        content = self.colour.working(content)
        if temporal is not None:
            temporal = TemporalTarget(self.colour.working(temporal.warped.to(self.device)), temporal.mask.to(self.device), temporal.weight)
        image = self._initial_image(content) if start is None else start
        if level.iterations == 0 and temporal is None:  # nothing to optimise: the start, as it is, without the network
            return Optimized(image.detach().clamp(0, 1), 0, False, [{} for _ in range(image.shape[0])])
        target = self.style_target(content)
        height, width = content.shape[-2:]
        # Tiles smaller than asked only where the device's free memory could not hold them.
        tile_size = fitting_tile_size(self.network, self.settings.tile_size, content.shape[0])
        boxes = tile_boxes(height, width, tile_size, TILE_OVERLAP)
        if len(boxes) == 1:
            return optimize(image, self.criterion(content, target, temporal), level, self.settings, self._reporter(level, 0, 1, height, width))
        return self._solve_tiles(image, content, target, level, boxes, temporal)

    def _solve_tiles(self, image, content, target: StyleTarget, level: Level, boxes, temporal) -> Optimized:
        height, width = content.shape[-2:]
        blended = torch.zeros_like(image)
        coverage = torch.zeros_like(image[:, :1])
        tiles: list[Optimized] = []
        for index, (top, left, h, w) in enumerate(boxes):
            window = (..., slice(top, top + h), slice(left, left + w))
            criterion = self.criterion(content[window], target, temporal.crop(window) if temporal else None)
            tile = optimize(image[window], criterion, level, self.settings, self._reporter(level, index, len(boxes), h, w))
            mask = feather((top, left, h, w), height, width, TILE_OVERLAP, image.device)
            blended[window] += tile.image * mask
            coverage[window] += mask
            tiles.append(tile)
        mean_losses = [
            {k: sum(tile.losses[i][k] for tile in tiles) / len(tiles) for k in tiles[0].losses[i]}
            for i in range(image.shape[0])
        ]
        return Optimized(blended / coverage, sum(t.steps for t in tiles), any(t.stopped_early for t in tiles), mean_losses)

    def criterion(self, content: torch.Tensor, target: StyleTarget, temporal: TemporalTarget | None = None,
                  features: Features | None = None) -> Callable[[torch.Tensor], LossTerms]:
        """Image -> weighted loss terms (`features`: the content's, when already computed). The
        losses run outside autocast: fp32 Gram matrices."""
        settings = self.settings
        if features is None:
            with torch.no_grad():
                features = self.network.features(content)
        loss = GatysLoss(
            {name: ContentLoss(features[name]) for name in settings.content_layers},
            {name: StyleLoss(target.grams[name]) for name in settings.style_layers},
            settings.layer_weights(), settings.content_weight, target.weight, settings.tv_weight, temporal,
        )
        return lambda image: loss(image, self.network.features(image))

    def style_target(self, content: torch.Tensor, picture_edge: int | None = None, features: Features | None = None) -> StyleTarget:
        """The style Grams for this working content, and the style term's weight for each image:
        the settings' balance over the style loss of the unstylized photo, so that the style
        term starts at 1 whatever the painting and photo, and `strength` means the same for all.
        `features`: the content's, when already computed."""
        grams = self.style_grams(content, picture_edge)
        photo = resize_long_edge(content, min(max(content.shape[-2:]), self.settings.tile_size))  # the whole picture, within memory
        if features is None or photo.shape != content.shape:
            with torch.no_grad():
                features = self.network.features(photo)
        at_photo = sum(weight * StyleLoss(grams[name])(features[name]) for name, weight in self.settings.layer_weights().items())
        return StyleTarget(grams, self.settings.style_balance() / at_photo.clamp_min(EPS))

    def style_grams(self, content: torch.Tensor, picture_edge: int | None = None) -> Grams:
        """The blend of each style's Gram matrices, weighted, for this working content (a crop of
        a picture of long edge `picture_edge`, when given)."""
        if self.colour.follows_content and content.shape[0] > 1:
            # Colour modes recolour the style after each content: one target per image.
            per_image = [self.style_grams(content[i : i + 1], picture_edge) for i in range(content.shape[0])]
            return {name: torch.cat([grams[name] for grams in per_image]) for name in self.settings.style_layers}
        long_edge = self.settings.style_edge(picture_edge or max(content.shape[-2:]))
        blended: Grams = {}
        for style in self.styles:
            grams = self._grams_of(style, long_edge, content)
            for name in self.settings.style_layers:
                blended[name] = blended.get(name, 0) + style.weight * grams[name]
        return blended

    def _grams_of(self, style: PreparedStyle, long_edge: int, content: torch.Tensor) -> Grams:
        # Colour modes recolour the style after the content, so the content joins the key.
        content_key = tensor_key(content) if self.colour.follows_content else ""
        key = (style.key, long_edge, self.colour.mode, content_key, self.settings.tile_size)

        def style_image() -> torch.Tensor:
            return self.colour.style(resize_long_edge(style.tensor, long_edge).to(self.device), content)

        return self.network.style_grams(key, style_image, self.settings.tile_size)

    def _initial_image(self, content: torch.Tensor) -> torch.Tensor:
        init = self.settings.init
        if init == "content":
            return content.clone()
        if init == "noise":
            generator = torch.Generator().manual_seed(self.settings.seed)
            return torch.rand(content.shape, generator=generator).to(content.device)
        return self.colour.working(resize(as_tensor(init), tuple(content.shape[-2:])).to(content.device))

    def _reporter(self, level: Level, tile: int, tiles: int, height: int, width: int):
        def report(iteration: int, iterations: int, terms: LossTerms, image: torch.Tensor) -> None:
            if self.callback is not None:
                elapsed = time.perf_counter() - self.started
                self.callback(Progress(level.index, level.levels, tile, tiles, iteration, iterations, height, width, terms, elapsed, image))

        return report

    def results(self, done: Optimized, content: torch.Tensor, sizes: list[tuple[int, int]]) -> list[StylizeResult]:
        """One result per batch element, with the content's colours back in luminance mode."""
        tensors = self.colour.restore(done.image, content).detach().clamp(0, 1).cpu().split(1)
        seconds = (time.perf_counter() - self.started) / len(tensors)  # a batch's time, shared out
        return [
            StylizeResult(to_pil(t), t, losses, done.steps, seconds, str(self.device), done.stopped_early, sizes)
            for t, losses in zip(tensors, done.losses)
        ]


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


def _check_fits_network(contents, stacked: torch.Tensor, styles: list[PreparedStyle], coarsest: int, settings: StyleSettings) -> None:
    """Refuse, before any work, a content or style too thin for VGG19 at the coarsest level."""
    for number, content in enumerate(contents, start=1):
        name = content if isinstance(content, (str, Path)) else f"content {number}"
        check_fits_network(*stacked.shape[-2:], coarsest, name)
    for style in styles:
        check_fits_network(*style.tensor.shape[-2:], settings.style_edge(coarsest), style.name)


def _is_single_style(styles) -> bool:
    if isinstance(styles, (Style, str, Path)) or not isinstance(styles, Sequence):
        return True
    # A bare (image, weight) pair, as opposed to a tuple of styles.
    return isinstance(styles, tuple) and len(styles) == 2 and isinstance(styles[1], (int, float))
