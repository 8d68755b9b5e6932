"""Running a plan: stylize each item, write it atomically, keep going past failures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import EnvironmentProblem, StylizeError
from .images import save_image
from .plan import PlanItem
from .stylize import Callback, stylize_image


@dataclass
class ItemOutcome:
    item: PlanItem
    status: str  # done or failed
    seconds: float
    iterations: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def run_items(
    items: list[PlanItem],
    on_start: Callable[[int, PlanItem], None] | None = None,
    on_progress: Callback | None = None,
    on_finish: Callable[[ItemOutcome], None] | None = None,
) -> list[ItemOutcome]:
    outcomes = []
    for index, item in enumerate(items):
        if on_start:
            on_start(index, item)
        outcome = _run_item(item, on_progress)
        outcomes.append(outcome)
        if on_finish:
            on_finish(outcome)
    return outcomes


def _run_item(item: PlanItem, on_progress: Callback | None) -> ItemOutcome:
    started = time.perf_counter()
    try:
        result = stylize_image(item.content, list(item.styles), item.settings, on_progress)
        save_image(result.image, item.output, quality=item.quality)
    except EnvironmentProblem:
        raise  # the machine, not the item, is at fault: stop the run
    except StylizeError as error:
        return ItemOutcome(item, "failed", time.perf_counter() - started, error=str(error))
    return ItemOutcome(item, "done", time.perf_counter() - started, result.iterations, result.losses)
