"""Running a manifest: plan, skip what is current, stylize the rest one item at a
time, write each output and its sidecar atomically, and keep going past failures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .atomic import write_json
from .errors import EnvironmentProblem, StylizeError
from .images import save_image
from .lock import OutputLock
from .manifest import Manifest, ManifestError, check_style_files
from .plan import PlanItem, plan, style_label
from .report import ItemRecord, RunReport
from .settings import StyleSettings
from .stylize import Progress, StylizeResult, stylize_image

MIN_TILE_SIZE = 128


class RunEvents:
    """What a run tells its caller; override the ones you need."""

    def planned(self, items: list["PlannedItem"]) -> None: ...
    def item_started(self, position: int, total: int, item: PlanItem) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def item_finished(self, record: ItemRecord) -> None: ...
    def note(self, message: str) -> None: ...


@dataclass
class PlannedItem:
    item: PlanItem
    key: str
    done: bool


def prepare(manifest: Manifest, only: list[str] | None = None, force: bool = False) -> list[PlannedItem]:
    """Plan the items and mark those whose output is current (never, with force)."""
    problems = check_style_files(manifest)
    if problems:
        raise ManifestError(manifest.source, problems)
    planned = []
    for item in plan(manifest, only):
        key = item.key()
        planned.append(PlannedItem(item, key, done=not force and item.is_done(key)))
    return planned


def run_planned(manifest: Manifest, planned: list[PlannedItem], events: RunEvents | None = None) -> RunReport:
    events = events or RunEvents()
    report = RunReport(str(manifest.source), manifest.output_dir)
    with OutputLock(manifest.output_dir) as lock:
        if lock.took_over:
            events.note(f"took over the lock of a run that is gone (pid {lock.took_over.get('pid')})")
        _remove_partial_files(manifest.output_dir)  # safe: we hold the lock, nobody else writes here
        todo = [p for p in planned if not p.done]
        for planned_item in planned:
            if planned_item.done:
                report.add(_skipped_record(planned_item.item))
        for position, planned_item in enumerate(todo, start=1):
            events.item_started(position, len(todo), planned_item.item)
            record = _run_item(planned_item, events)
            report.add(record)
            events.item_finished(record)
        report.finish()
    return report


def _remove_partial_files(output_dir: Path) -> None:
    """A killed run can leave the temporary file it was writing; the rename never happened."""
    for partial in output_dir.rglob(".*.tmp"):
        partial.unlink(missing_ok=True)


def _run_item(planned: PlannedItem, events: RunEvents) -> ItemRecord:
    item, started = planned.item, time.perf_counter()
    try:
        result, settings = _stylize_with_fallback(item, events)
        save_image(result.image, item.output, quality=item.quality)
        _write_sidecar(planned, result, settings)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise  # the machine or the user stops the run, not this item
    except StylizeError as error:
        return _record(item, "failed", time.perf_counter() - started, error=str(error))
    except Exception as error:  # noqa: BLE001 - one bad item must not end a night's run
        return _record(item, "failed", time.perf_counter() - started, error=f"{error.__class__.__name__}: {error}")
    return _record(item, "done", time.perf_counter() - started, result=result)


def _stylize_with_fallback(item: PlanItem, events: RunEvents) -> tuple[StylizeResult, StyleSettings]:
    """On GPU out-of-memory, retry with tiles half the size until they reach MIN_TILE_SIZE."""
    settings = item.settings
    while True:
        try:
            return stylize_image(item.content, list(item.styles), settings, events.progress), settings
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if settings.tile_size // 2 < MIN_TILE_SIZE:
                raise StylizeError(f"{item.content}: out of GPU memory even with tile_size {settings.tile_size}; lower size") from None
            settings = settings.model_copy(update={"tile_size": settings.tile_size // 2})
            events.note(f"out of GPU memory on {item.content.name}: retrying with tile_size {settings.tile_size}")


def _write_sidecar(planned: PlannedItem, result: StylizeResult, settings: StyleSettings) -> None:
    item = planned.item
    write_json(item.sidecar, {
        "key": planned.key,
        "job": item.job,
        "input": str(item.content),
        "styles": [{"path": str(s.image), "weight": s.weight} for s in item.styles],
        "settings": settings.model_dump(mode="json"),
        "losses": result.losses,
        "iterations": result.iterations,
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _record(item: PlanItem, status: str, seconds: float, result: StylizeResult | None = None, error: str | None = None) -> ItemRecord:
    return ItemRecord(
        job=item.job, input=str(item.content), style=style_label(item.styles), output=str(item.output),
        status=status, seconds=round(seconds, 3), error=error,
        iterations=result.iterations if result else 0,
        losses=result.losses if result else {},
        device=result.device if result else None,
    )


def _skipped_record(item: PlanItem) -> ItemRecord:
    record = _record(item, "skipped", 0.0)
    try:
        sidecar = json.loads(Path(item.sidecar).read_text())
        record.iterations, record.losses, record.device = sidecar["iterations"], sidecar["losses"], sidecar["device"]
    except (OSError, ValueError, KeyError):
        pass
    return record
