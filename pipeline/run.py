"""Running a manifest: plan, skip what is current, stylize the rest one item at a
time, write each output and its sidecar atomically, and keep going past failures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps

from . import __version__
from .files import remove_partials, write_json
from .errors import EnvironmentProblem, InputError, StylizeError
from .device import resolve_device
from .images import fit_long_edge, save_image
from .lock import OutputLock
from .memory import MIN_TILE_SIZE, fitting_batch, free_bytes
from .manifest import Manifest, ManifestError, check_style_files
from .plan import PlanItem, plan, style_label
from .report import ItemRecord, RunReport
from .settings import StyleSettings
from .stylize import Progress, StylizeResult, get_stylizer
from .video import Clip, VideoProgress, assemble, open_clip, stylize_segment

BACKENDS = ("local", "ray")

MAX_BATCH = 16


class RunEvents:
    """What a run tells its caller; override the ones you need."""

    def planned(self, items: list["PlannedItem"]) -> None: ...
    def item_started(self, position: int, total: int, item: PlanItem) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def video_progress(self, progress: VideoProgress) -> None: ...
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
        from .cluster import require_ray, run_on_ray  # Ray is optional: imported only when chosen

        require_ray()  # before the lock: a missing extra is an error, not a run
    report = RunReport(str(manifest.source), manifest.output_dir)
    with OutputLock(manifest.output_dir) as lock:
        if lock.took_over:
            events.note(f"took over the lock of a run that is gone (pid {lock.took_over.get('pid')})")
        remove_partials(manifest.output_dir)  # safe: we hold the lock, nobody else writes here
        for planned_item in planned:
            if planned_item.done:
                report.add(_skipped_record(planned_item.item))
        if backend == "ray" and todo:
            records = run_on_ray(todo, events, ray_address or manifest.ray_address, workers)
        else:
            records = _run_local(todo, events, batch_size)
        for record in records:
            report.add(record)
            events.item_finished(record)
        report.finish()
    return report


def _run_local(todo: list[PlannedItem], events: RunEvents, batch_size: int | None):
    position = 0
    for batch in _batches(todo, batch_size):
        for planned_item in batch:
            position += 1
            events.item_started(position, len(todo), planned_item.item)
        yield from _run_batch(batch, events)


def run_item(planned: PlannedItem, events: RunEvents) -> ItemRecord:
    """One item alone, as a cluster worker runs it."""
    return _run_batch([planned], events)[0]


def _batches(todo: list[PlannedItem], batch_size: int | None):
    """Groups of items that share settings, styles and working size."""
    if batch_size == 1 or (batch_size is None and not torch.cuda.is_available()):
        yield from ([p] for p in todo)
        return
    groups: dict[tuple, list[PlannedItem]] = {}
    for planned_item in todo:
        groups.setdefault(_batch_key(planned_item.item), []).append(planned_item)
    for (settings, _, size), members in groups.items():
        limit = batch_size or auto_batch_size(settings, size)
        for start in range(0, len(members), limit):
            yield members[start : start + limit]


def _batch_key(item: PlanItem) -> tuple:
    if item.is_video:
        return (item.settings, item.styles, ("video", str(item.content)))  # clips run alone
    try:
        with Image.open(item.content) as image:
            width, height = ImageOps.exif_transpose(image).size
    except Exception:  # noqa: BLE001 - an unreadable file gets a batch of its own and fails there
        return (item.settings, item.styles, ("unreadable", str(item.content)))
    return (item.settings, item.styles, fit_long_edge(height, width, item.settings.size))


def auto_batch_size(settings: StyleSettings, size: tuple) -> int:
    """Photos per batch that fit in free GPU memory, from the network's measured bytes per pixel."""
    device = resolve_device(settings.device)
    budget = free_bytes(device)
    if budget is None or not isinstance(size[0], int):
        return 1
    pixels = min(size[0], settings.tile_size) * min(size[1], settings.tile_size)
    return fitting_batch(get_stylizer(settings), pixels, budget, MAX_BATCH)


def _run_batch(batch: list[PlannedItem], events: RunEvents) -> list[ItemRecord]:
    started = time.perf_counter()
    if batch[0].item.is_video:
        return [_run_video(batch[0], events)]
    try:
        results, settings = _stylize_with_fallback([p.item for p in batch], events)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise  # the machine or the user stops the run, not these items
    except Exception as error:  # noqa: BLE001 - one bad item must not end a night's run
        if len(batch) > 1:  # find the culprit: each item alone
            return [record for p in batch for record in _run_batch([p], events)]
        return [_record(batch[0].item, "failed", time.perf_counter() - started, error=_describe(error))]
    return [_finish_item(p, result, settings) for p, result in zip(batch, results)]


def _finish_item(planned: PlannedItem, result: StylizeResult, settings: StyleSettings) -> ItemRecord:
    item = planned.item
    summary = {"losses": result.losses, "iterations": result.iterations, "seconds": round(result.seconds, 3), "device": result.device}
    try:
        save_image(result.image, item.output, quality=item.quality)
        _write_sidecar(planned, settings, summary)
    except (StylizeError, OSError) as error:
        return _record(item, "failed", result.seconds, error=_describe(error))
    return _record(item, "done", result.seconds, result=result)


def _run_video(planned: PlannedItem, events: RunEvents) -> ItemRecord:
    """All segments of a clip one after another, then the join; a cluster spreads the segments out."""
    item, started = planned.item, time.perf_counter()
    try:
        clip = clip_of(planned)
        for segment in clip.segments:
            stylize_segment(clip, segment, events.video_progress)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - one bad clip must not end a night's run
        return _record(item, "failed", time.perf_counter() - started, error=_describe(error))
    return finish_clip(planned, clip)


def clip_of(planned: PlannedItem) -> Clip:
    """The clip an item names, with its segments; its work folders are keyed by the item's key."""
    item = planned.item
    return open_clip(item.content, list(item.styles), item.output, item.settings, item.video, planned.key)


def run_segment(planned: PlannedItem, number: int, events: RunEvents) -> str | None:
    """Stylize one segment of a clip into its work folder; the error when the clip itself is at fault."""
    try:
        clip = clip_of(planned)
        stylize_segment(clip, clip.segments[number], events.video_progress)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - reported as the item's failure, never retried
        return _describe(error)
    return None


def finish_clip(planned: PlannedItem, clip: Clip | None = None) -> ItemRecord:
    """Join a clip's finished segments into its output, with sidecar and record."""
    item, started = planned.item, time.perf_counter()
    try:
        result = assemble(clip or clip_of(planned))
        device = str(get_stylizer(item.settings).device)
        summary = {"video": result.as_report(), "seconds": result.seconds, "device": device, "iterations": 0, "losses": {}}
        _write_sidecar(planned, item.settings, summary)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - one bad clip must not end a night's run
        return _record(item, "failed", time.perf_counter() - started, error=_describe(error))
    record = _record(item, "done", result.seconds)
    record.device, record.video = device, result.as_report()
    return record


def _describe(error: Exception) -> str:
    return str(error) if isinstance(error, StylizeError) else f"{error.__class__.__name__}: {error}"


def _stylize_with_fallback(items: list[PlanItem], events: RunEvents) -> tuple[list[StylizeResult], StyleSettings]:
    """On GPU out-of-memory a batch splits into single items (by the caller); a single
    item retries with tiles half the size until they reach MIN_TILE_SIZE."""
    settings, first = items[0].settings, items[0]
    while True:
        try:
            contents = [item.content for item in items]
            return get_stylizer(settings).stylize_batch(contents, list(first.styles), settings, events.progress), settings
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(items) > 1:
                events.note(f"out of GPU memory with a batch of {len(items)}: running them one by one")
                raise
            if settings.tile_size // 2 < MIN_TILE_SIZE:
                raise StylizeError(f"{first.content}: out of GPU memory even with tile_size {settings.tile_size}; lower size") from None
            settings = settings.model_copy(update={"tile_size": settings.tile_size // 2})
            events.note(f"out of GPU memory on {first.content.name}: retrying with tile_size {settings.tile_size}")


def _write_sidecar(planned: PlannedItem, settings: StyleSettings, summary: dict) -> None:
    item = planned.item
    write_json(item.sidecar, {
        "key": planned.key,
        "job": item.job,
        "input": str(item.content),
        "styles": [{"path": str(s.image), "weight": s.weight} for s in item.styles],
        "settings": settings.model_dump(mode="json"),
        **({"video_settings": item.video.model_dump(mode="json")} if item.video else {}),
        **summary,
        "version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def failed_record(item: PlanItem, error: str, seconds: float = 0.0) -> ItemRecord:
    return _record(item, "failed", seconds, error=error)


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
    record.attempts = 0
    try:
        sidecar = json.loads(Path(item.sidecar).read_text())
        record.iterations, record.losses, record.device = sidecar["iterations"], sidecar["losses"], sidecar["device"]
        record.video = sidecar.get("video")
    except (OSError, ValueError, KeyError):
        pass
    return record
