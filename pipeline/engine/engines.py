"""The engines behind one interface, and the one place that picks one. An engine turns
photos into pictures and says what its pictures depend on (for keys): the optimiser
(Gatys et al.: VGG19 steps on every picture) or a trained model (a feed-forward network
per painting: milliseconds a picture). Callers hold an Engine and never ask which."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Protocol, Sequence

import torch

from ..media.files import check_destination, file_digest, remove_partials_of
from ..media.images import check_image_output, save_image
from ..media.lock import OutputLock
from ..errors import InputError
from ..settings import Precision, StyleSettings
from .device import native_bf16, resolve_device
from .model_file import load_model
from .losses import TemporalTarget
from .stylize import Callback, PreparedStyle, StylizeResult, prepare_styles, stylize_batch, stylize_frame
from .tensors import ImageLike, as_tensor, resize_long_edge, to_pil


class Engine(Protocol):
    """`chained`: how a clip's frames are made. True (the optimiser): each frame starts from the
    previous output warped by optical flow and is held to it by a temporal loss (`stylize_frame`).
    False (a trained model): every frame stands alone, already steady by training, so a clip
    needs no flow but to measure it. `styles`: what the judge measures style against (None where
    the engine holds no painting's pixels)."""

    chained: bool
    styles: list[PreparedStyle] | None
    device: torch.device

    def stylize(self, contents: Sequence[ImageLike], callback: Callback | None = None) -> list[StylizeResult]:
        """Same-sized contents in, one result each."""

    def identity(self) -> dict:
        """What the pictures depend on besides the content: a key's share."""


class OptimizerEngine:
    """Gatys et al.: each picture optimised against the perceptual objective."""

    chained = True

    def __init__(self, styles, settings: StyleSettings):
        self.styles, self.settings = prepare_styles(styles), settings
        self.device = resolve_device(settings.device)

    def stylize(self, contents, callback=None) -> list[StylizeResult]:
        return stylize_batch(contents, self.styles, self.settings, callback)

    def stylize_frame(self, content: torch.Tensor, start: torch.Tensor, iterations: int,
                      temporal: TemporalTarget | None = None) -> StylizeResult:
        """A clip's frame at its working size, warm-started from `start`, optionally held to a temporal target."""
        return stylize_frame(content, self.styles, self.settings, start, iterations, temporal)

    def identity(self) -> dict:
        return {"engine": "optimizer", "settings": self.settings.output_identity()}


class TrainedModel:
    """A network trained for a painting (`stylize train`): one pass per picture, at the
    settings' size; the painting, strength and recipe are the model file's, which keeps the
    painting's digest but not its pixels, so the judge has no style to measure against."""

    chained = False
    styles = None

    def __init__(self, path: str | Path, settings: StyleSettings):
        self.path, self.settings = Path(path), settings
        self.device = resolve_device(settings.device)
        self.dtype = model_dtype(self.device, settings.precision)
        self.net, self.info = _loaded(str(self.path.resolve()), str(self.device))

    def stylize(self, contents, callback=None) -> list[StylizeResult]:
        started = time.perf_counter()
        batch = torch.cat([resize_long_edge(as_tensor(content), self.settings.size) for content in contents])
        pictures = self.paint(batch)
        seconds, size = (time.perf_counter() - started) / len(contents), tuple(pictures.shape[-2:])
        return [StylizeResult(to_pil(picture), picture[None], {}, 0, seconds, str(self.device), False, [size]) for picture in pictures]

    def paint(self, batch: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] to the same on the CPU, in one pass."""
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            return self.net(batch.to(self.device)).float().clamp(0, 1).cpu()

    def identity(self) -> dict:
        precision = "fp32" if self.dtype is None else "bf16"  # the pictures differ by a level or two between them
        return {"engine": "model", "model": file_digest(self.path), "bytes": self.path.stat().st_size,
                "size": self.settings.size, "precision": precision}


def model_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """bf16 autocast for a trained model (None: fp32). `mixed` is bf16 autocast too: autocast
    already keeps the norms and the output's sigmoid in fp32. `auto` is bf16 where the device
    has bf16 arithmetic (CUDA GPUs that support it; CPUs with AVX-512 BF16 or AMX), else fp32.
    Measured on a 2-core AVX-512 BF16 EPYC, the lean design trained 20 steps, 320x240 frames of
    realshort.mp4 in batches of 4 on one thread: fp32 24 ms a frame, bf16 12.6 ms (1.9x); the
    8-bit pictures differ by at most 1 level, 0.07 on average (6.6% of values by one level),
    where the model moves them 24 levels from the photo: nothing to see. On CUDA (not measured
    here) bf16 autocast puts the convolutions on tensor cores, as it does for the optimiser's VGG."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    return None if precision == "fp32" else torch.bfloat16


def engine_for(styles, settings: StyleSettings, model: str | Path | None = None) -> Engine:
    """The engine a command asked for: a trained model when one is given, else the optimiser."""
    return TrainedModel(model, settings) if model is not None else OptimizerEngine(styles, settings)


def stylize_image_file(content: ImageLike, styles, output: str | Path, settings: StyleSettings | None = None,
                       quality: int = 95, callback: Callback | None = None, model: str | Path | None = None) -> StylizeResult:
    """One picture, by the engine asked for, written atomically to `output` (its format from
    its suffix, checked before any work) while holding the output's lock."""
    output, settings = Path(output), settings or StyleSettings()
    if not 1 <= quality <= 100:
        raise InputError(f"quality: must be 1 to 100, got {quality}")
    check_image_output(output)
    check_destination(output)
    engine = engine_for(styles, settings, model)
    with OutputLock.for_output(output):
        remove_partials_of(output)
        result = engine.stylize([content], callback)[0]
        save_image(result.image, output, quality=quality)
    return result


def _loaded(path: str, device: str):
    stat = Path(path).stat()
    return _load_once(path, device, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_once(path: str, device: str, size: int, modified_ns: int):
    net, info = load_model(path)
    return net.to(device).eval(), info
