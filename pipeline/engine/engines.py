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
from ..settings import StyleSettings
from .device import resolve_device
from .model_file import load_model
from .stylize import Callback, StylizeResult, stylize_batch
from .tensors import ImageLike, as_tensor, resize_long_edge, to_pil


class Engine(Protocol):
    def stylize(self, contents: Sequence[ImageLike], callback: Callback | None = None) -> list[StylizeResult]:
        """Same-sized contents in, one result each."""

    def identity(self) -> dict:
        """What the pictures depend on besides the content: a key's share."""


class Optimizer:
    """Gatys et al.: each picture optimised against the perceptual objective."""

    def __init__(self, styles, settings: StyleSettings):
        self.styles, self.settings = styles, settings

    def stylize(self, contents, callback=None) -> list[StylizeResult]:
        return stylize_batch(contents, self.styles, self.settings, callback)

    def identity(self) -> dict:
        return {"engine": "optimizer", "settings": self.settings.output_identity()}


class TrainedModel:
    """A network trained for a painting (`stylize train`): one pass per picture, at the
    settings' size; the painting, strength and recipe are the model file's."""

    def __init__(self, path: str | Path, settings: StyleSettings):
        self.path, self.settings = Path(path), settings
        self.device = resolve_device(settings.device)
        self.net, self.info = _loaded(str(self.path.resolve()), str(self.device))

    def stylize(self, contents, callback=None) -> list[StylizeResult]:
        results = []
        for content in contents:
            started = time.perf_counter()
            tensor = resize_long_edge(as_tensor(content), self.settings.size).to(self.device)
            with torch.inference_mode():
                picture = self.net(tensor).clamp(0, 1).cpu()
            size = tuple(picture.shape[-2:])
            results.append(StylizeResult(to_pil(picture), picture, {}, 0, time.perf_counter() - started, str(self.device), False, [size]))
        return results

    def identity(self) -> dict:
        return {"engine": "model", "model": file_digest(self.path), "size": self.settings.size}


def engine_for(styles, settings: StyleSettings, model: str | Path | None = None) -> Engine:
    """The engine a command asked for: a trained model when one is given, else the optimiser."""
    return TrainedModel(model, settings) if model is not None else Optimizer(styles, settings)


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
