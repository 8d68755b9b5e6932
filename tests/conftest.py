"""Shared fixtures: sample paths, tiny CPU settings, and a few stylizations that
several tests inspect (run once per session to keep the suite fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from pipeline import Progress, StyleSettings, StylizeResult, evaluate, stylize_image
from pipeline.engine import memory
from pipeline.engine.tensors import as_tensor, resize

# The test images are tiny (<= 96 px), where OpenMP's thread hand-offs dominate the
# convolutions: on a busy 2-core box two threads ran VGG19 ~25x slower than one.
# One thread also makes runs bit-for-bit repeatable.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["browser"]  # the `browser` and `page` fixtures: Debian chromium via Playwright


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def photo(repo) -> Path:
    """451x300 landscape: 43x64 at size=64."""
    return repo / "samples" / "photos" / "chelsea.jpg"


@pytest.fixture(scope="session")
def astronaut(repo) -> Path:
    return repo / "samples" / "photos" / "astronaut.jpg"


@pytest.fixture(scope="session")
def starry(repo) -> Path:
    return repo / "samples" / "styles" / "starry_night.jpg"


@pytest.fixture(scope="session")
def matisse(repo) -> Path:
    return repo / "samples" / "styles" / "woman-with-hat-matisse.jpg"


def tiny(**overrides) -> StyleSettings:
    """64 px, 30 L-BFGS steps, CPU, never stop early; override anything."""
    values = dict(size=64, iterations=30, device="cpu", tolerance=0)
    values.update(overrides)
    return StyleSettings(**values)


@pytest.fixture(scope="session")
def settings() -> StyleSettings:
    return tiny()


@pytest.fixture(scope="session")
def style_loss(photo):
    """style_loss(image, style, settings=tiny()) as the optimizer scores it, against `photo`."""

    def score(image, style, settings: StyleSettings | None = None) -> float:
        return evaluate(image, photo, style, settings or tiny())["style"]

    return score


def content_at(path, result: StylizeResult) -> torch.Tensor:
    """The content image resized to the result's size."""
    return resize(as_tensor(path), tuple(result.tensor.shape[-2:]))


@dataclass
class Run:
    result: StylizeResult
    progress: list[Progress]


def run(content, styles, settings: StyleSettings) -> Run:
    progress: list[Progress] = []
    result = stylize_image(content, styles, settings, callback=progress.append)
    return Run(result, progress)


@pytest.fixture(scope="session")
def starry_run(photo, starry, settings) -> Run:
    """photo in the style of Starry Night, default tiny settings (preserve_color none)."""
    return run(photo, starry, settings)


def step_bytes(network, pixels: int, batch: int = 1) -> int:
    """What the memory model says one step needs: the inverse of largest_edge and fitting_batch."""
    return memory.FIXED_BYTES + math.ceil(batch * pixels * memory.bytes_per_pixel(network))
