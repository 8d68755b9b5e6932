"""Running a manifest: the one library call the CLI, the studio and the benchmark make.

    1. load_manifest  check everything before any work, every problem with its location
    2. prepare        plan the items, marking those whose output is current
    3. run_planned    lock the output folder and every output to write, clean up what dead
                      writers left, run the rest here or on a Ray cluster, and report each item
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import EnvironmentProblem, InputError
from ..media.lock import OutputLock, describe_holder, is_held, remove_stale_files
from .backends.local import run_local
from .events import RunEvents
from .manifest import Manifest, load_manifest
from .plan import PlanItem, PlannedItem, prepare
from .report import ItemRecord, RunReport
from .thumbnails import make_thumbnails

BACKENDS = ("local", "ray")


@dataclass
class RunOutcome:
    manifest: Manifest
    planned: list[PlannedItem]
    report: RunReport | None  # None after a dry run


def run_manifest(
    path: str | Path,
    events: RunEvents | None = None,
    *,
    only: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    batch_size: int | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
) -> RunOutcome:
    """Everything a manifest lists that is not current yet (with `force`, everything)."""
    events = events or RunEvents()
    manifest = load_manifest(path)
    planned = prepare(manifest, only, force)
    events.planned(planned)
    if dry_run:
        return RunOutcome(manifest, planned, None)
    report = run_planned(manifest, planned, events, batch_size, backend, ray_address, workers)
    return RunOutcome(manifest, planned, report)


def run_planned(
    manifest: Manifest,
    planned: list[PlannedItem],
    events: RunEvents | None = None,
    batch_size: int | None = None,
    backend: str | None = None,
    ray_address: str | None = None,
    workers: int | None = None,
) -> RunReport:
    """Run what is not done, here (backend local) or on a Ray cluster (backend ray; the
    manifest's `backend:` unless given). Either way this process holds the lock, cleans up,
    writes the report and tells `events`. batch_size None: as many same-sized photos per
    batch as GPU memory allows (local only)."""
    events = events or RunEvents()
    backend = backend or manifest.backend
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: use {' or '.join(BACKENDS)}", manifest.source)
    todo = [p for p in planned if not p.done]
    if backend == "ray" and todo:
        from .backends.ray import require_ray, run_on_ray  # Ray is optional: imported only when chosen

        require_ray()  # before the lock: a missing extra is an error, not a run

    def start(todo: list[PlannedItem], tracked: RunEvents) -> Iterator[ItemRecord]:
        if backend == "ray":
            return run_on_ray(todo, tracked, ray_address or manifest.ray_address, workers)
        return run_local(todo, tracked, batch_size)

    report = RunReport(str(manifest.source), manifest.output_dir)
    with OutputLock.for_folder(manifest.output_dir, [p.item.output for p in todo], str(manifest.source)) as folder_lock:
        if folder_lock.took_over:
            events.note(f"took over the lock of a run that is gone (pid {folder_lock.took_over.get('pid')})")
        remove_stale_files(manifest.output_dir)  # safe: no live writer holds what it removes
        _run_items(report, planned, folder_lock, events, start)
    return report


def _run_items(report: RunReport, planned: list[PlannedItem], folder_lock: OutputLock, events: RunEvents,
               start: Callable[[list[PlannedItem], RunEvents], Iterator[ItemRecord]]) -> None:
    """Run the items not done, but those a single `stylize image` or `stylize video` is
    writing (they fail at once, naming it), and finish the report however the run ends:
    done, stopped by a signal, or stopped by the machine (a full disk). A run whose output
    folder vanished writes nothing more."""
    report.begin()
    todo = []
    for p in planned:
        holder = None if p.done else is_held(p.item.output)
        if p.done:
            _add(report, ItemRecord.skipped(p.item), p.item)
        elif holder is not None:
            error = f"{p.item.output} is in use by {describe_holder(holder)}; run again when it has finished"
            report.add(ItemRecord.of(p.item, "failed", error=error))
        else:
            todo.append(p)
    items = {str(p.item.output): p.item for p in todo}
    tracked = _InFlight(events)
    try:
        for record in start(todo, tracked) if todo else ():
            tracked.finished(record)
            _add(report, record, items[record.output])
            events.item_finished(record)
            if not folder_lock.still_held():
                raise _LockLost(f"{report.output_dir}: the output folder or its lock was removed during the run; "
                                "stopped, as its writes could no longer be kept to one run; run again to redo what is missing")
    except _LockLost:
        raise
    except BaseException as stop:  # a signal, the machine (a full disk), or a fault of ours: the report still ends
        reason = f"stopped by {getattr(stop, 'signal_name', 'SIGINT')}" if isinstance(stop, KeyboardInterrupt) else f"run stopped: {stop}"
        for item in tracked.items.values():  # video work folders stay, for the rerun to resume
            report.add(ItemRecord.of(item, "interrupted", error=reason))
        try:
            report.finish()
        except EnvironmentProblem:
            pass  # the disk took not even the report; the stop's own reason is the one to tell
        raise
    report.finish()


class _LockLost(EnvironmentProblem):
    """The run's output folder lock is gone: nothing more may be written there."""


def _add(report: RunReport, record: ItemRecord, item: PlanItem) -> None:
    """Record an item, with thumbnails of what it made for report.html; here, on the driver,
    whichever backend ran it."""
    if record.status in ("done", "skipped"):
        record.thumbnails = make_thumbnails(item, report.output_dir, record.video)
    report.add(record)


class _InFlight:
    """The caller's events, remembering the items started and not yet finished; every other
    event passes through untouched, so a new kind of event can never be dropped here."""

    def __init__(self, events: RunEvents):
        self.events = events
        self.items: dict[str, PlanItem] = {}

    def __getattr__(self, name: str):
        return getattr(self.events, name)

    def item_started(self, position: int, total: int, item: PlanItem) -> None:
        self.items[str(item.output)] = item
        self.events.item_started(position, total, item)

    def finished(self, record: ItemRecord) -> None:
        self.items.pop(record.output, None)
