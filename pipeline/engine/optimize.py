"""The optimisation loop: steps of L-BFGS or Adam on the image, early stop when the loss
levels off, a clear error when it diverges. Returns the lowest-loss image it met, as a
typed result, never a tuple."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import StylizeError
from ..settings import StyleSettings
from .losses import LossTerms

EARLY_STOP_WINDOW = 10

Criterion = Callable[[torch.Tensor], LossTerms]
StepReport = Callable[[int, int, LossTerms, torch.Tensor], None]  # step, of, terms, live image


@dataclass(frozen=True)
class Level:
    """One scale of the coarse-to-fine schedule."""

    index: int
    levels: int
    iterations: int
    tolerance: float


@dataclass
class Optimized:
    image: torch.Tensor  # [B, 3, H, W] in [0, 1], detached, on the device
    steps: int
    stopped_early: bool
    losses: list[dict[str, float]]  # final weighted losses, one dict per image in the batch

    def after(self, earlier: "Optimized | None") -> "Optimized":
        """This level's result, counting the steps of the levels before it."""
        if earlier is None:
            return self
        losses = self.losses if any(self.losses) else earlier.losses  # a level of no steps was not scored
        return Optimized(self.image, earlier.steps + self.steps, earlier.stopped_early or self.stopped_early, losses)


def optimize(start: torch.Tensor, criterion: Criterion, level: Level, settings: StyleSettings, report: StepReport) -> Optimized:
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

    best = _Best()
    stopped, steps = False, 0
    for steps in range(1, level.iterations + 1):
        before = image.detach().clone()
        optimizer.step(closure)
        with torch.no_grad():
            image.clamp_(0, 1)
        terms = latest[0].detached()
        best.offer(before, terms.total)  # the closure scored the image as it was before this step
        totals = totals[-EARLY_STOP_WINDOW:] + [terms.total.sum()]
        report(steps, level.iterations, terms, image.detach())
        if steps % EARLY_STOP_WINDOW == 0 and _converged(torch.stack(totals).tolist(), level.tolerance, settings):
            stopped = True
            break
    with torch.no_grad():
        last = image.detach().clamp(0, 1)
        best.offer(last, criterion(last).total)
        result = best.image
        final = [criterion(result).as_floats(i) for i in range(result.shape[0])]
    _check_finite(sum(losses["total"] for losses in final), settings)
    return Optimized(result, steps, stopped, final)


class _Best:
    """The lowest-loss image met so far, per image of the batch. L-BFGS on an image clamped to
    [0, 1] can climb again once it nears a minimum (measured: 160 steps ending 9% above 80),
    so more steps must never give a worse result."""

    def __init__(self):
        self.image: torch.Tensor | None = None
        self.totals: torch.Tensor | None = None

    def offer(self, image: torch.Tensor, totals: torch.Tensor) -> None:
        totals = totals.detach().float()
        if self.image is None:
            self.image, self.totals = image.detach(), totals  # callers offer tensors nothing else writes to
            return
        lower = totals < self.totals  # NaN never counts as lower
        self.image = torch.where(lower.view(-1, *([1] * (image.dim() - 1))), image.detach(), self.image)
        self.totals = torch.where(lower, totals, self.totals)


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
