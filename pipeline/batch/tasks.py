"""The units of work a backend runs, and the one place they run. A task is one picklable
value (a batch of photos, one segment of a clip, or a clip's join) so that a Ray worker
runs exactly what this process would. `execute` is the only place an exception becomes a
failed record: an item's own failure is recorded and the run goes on; environment problems
and interrupts stop the run."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Literal

import torch

from ..engine.memory import MIN_TILE_SIZE, photos_per_batch
from ..engine.stylize import StylizeResult, stylize_batch
from ..errors import EnvironmentProblem, StylizeError, describe_error
from ..media.files import timestamp, write_json
from ..media.images import displayed_size, fit_long_edge, save_image
from ..settings import StyleSettings
from ..version import __version__
from ..video.chain import stylize_segment
from ..video.clip import Clip, open_clip
from ..video.join import assemble
from .events import RunEvents
from .plan import PlannedItem
from .report import ItemRecord

MAX_BATCH = 16

TaskKind = Literal["photos", "segment", "join"]


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    items: tuple[PlannedItem, ...]  # photos: the batch; segment and join: the clip, alone
    segment: int = 0
    segments: int = 1  # of the clip

    @property
    def label(self) -> str:
        name = self.items[0].item.content.name
        return f"{name} segment {self.segment + 1}/{self.segments}" if self.kind == "segment" and self.segments > 1 else name


def work_units(todo: list[PlannedItem], batch_size: int | None) -> list[list[Task]]:
    """The tasks for every item, grouped: a unit is one photo batch, or a clip's segments
    then its join. Photos batch when they share settings, styles and working size."""
    units, groups = [], {}
    for planned in todo:
        if planned.item.is_video:
            units.append(clip_tasks(planned))
        else:
            groups.setdefault(_batch_key(planned), []).append(planned)
    batching = batch_size != 1 and (batch_size is not None or torch.cuda.is_available())
    for key, members in groups.items():
        limit = (batch_size or _auto_batch(key)) if batching else 1
        units += [[Task("photos", tuple(members[i : i + limit]))] for i in range(0, len(members), limit)]
    position = {id(planned): index for index, planned in enumerate(todo)}
    return sorted(units, key=lambda unit: position[id(unit[0].items[0])])


def clip_tasks(planned: PlannedItem) -> list[Task]:
    """A clip's segments, then its join. A clip that cannot be opened gets one segment
    task, which fails on its worker with the reason, like any other."""
    try:
        count = len(_open(planned).segments)
    except StylizeError:
        count = 1
    return [Task("segment", (planned,), n, count) for n in range(count)] + [Task("join", (planned,), 0, count)]


def execute(task: Task, events: RunEvents) -> list[ItemRecord]:
    """Run one task; its records (none for a segment that succeeded)."""
    started = time.perf_counter()
    try:
        return _RUNS[task.kind](task, events)
    except (EnvironmentProblem, KeyboardInterrupt):
        raise  # the machine or the user stops the run, not these items
    except Exception as error:  # noqa: BLE001 - one bad item must not end a night's run
        if _out_of_space(error):  # every item after would fail the same way: stop, keeping what is done
            raise EnvironmentProblem(f"{task.items[0].item.output.parent}: no space left on the device while writing "
                                     f"{task.label}; free some space and run again to do the rest") from None
        if task.kind == "photos" and len(task.items) > 1:  # find the culprit: each item alone
            return [record for planned in task.items for record in execute(Task("photos", (planned,)), events)]
        where = f"segment {task.segment + 1}/{task.segments}: " if task.kind == "segment" and task.segments > 1 else ""
        seconds = time.perf_counter() - started
        return [ItemRecord.of(p.item, "failed", seconds, error=where + describe_error(error)) for p in task.items]


def _out_of_space(error: Exception) -> bool:
    """A full disk or quota, whether Python saw it (OSError) or ffmpeg did (its message)."""
    return getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error)


def _run_photos(task: Task, events: RunEvents) -> list[ItemRecord]:
    results, settings = _stylize_with_fallback(task, events)
    records = []
    for planned, result in zip(task.items, results):
        save_image(result.image, planned.item.output, quality=planned.item.quality)
        summary = {"losses": result.losses, "iterations": result.iterations, "seconds": round(result.seconds, 3), "device": result.device}
        _write_sidecar(planned, settings, summary)
        records.append(ItemRecord.of(planned.item, "done", result.seconds, iterations=result.iterations,
                                     losses=result.losses, device=result.device))
    return records


def _run_segment(task: Task, events: RunEvents) -> list[ItemRecord]:
    clip = _open(task.items[0])
    stylize_segment(clip, clip.segments[task.segment], events.video_progress)
    return []


def _run_join(task: Task, events: RunEvents) -> list[ItemRecord]:
    planned = task.items[0]
    result = assemble(_open(planned))
    video = result.as_report()
    _write_sidecar(planned, planned.item.settings,
                   {"video": video, "seconds": result.seconds, "device": result.device, "iterations": 0, "losses": {}})
    return [ItemRecord.of(planned.item, "done", result.seconds, device=result.device, video=video)]


_RUNS = {"photos": _run_photos, "segment": _run_segment, "join": _run_join}


def _open(planned: PlannedItem) -> Clip:
    item = planned.item
    return open_clip(item.content, item.styles, item.output, item.settings, item.video)


def _stylize_with_fallback(task: Task, events: RunEvents) -> tuple[list[StylizeResult], StyleSettings]:
    """On GPU out-of-memory a batch splits into single items (by execute); a single
    item retries with tiles half the size until they reach MIN_TILE_SIZE."""
    items = [planned.item for planned in task.items]
    settings, first = items[0].settings, items[0]
    while True:
        try:
            return stylize_batch([item.content for item in items], list(first.styles), settings, events.progress), settings
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
        "finished": timestamp(),
    })


def _batch_key(planned: PlannedItem) -> tuple:
    item = planned.item
    try:
        size = fit_long_edge(*displayed_size(item.content), item.settings.size)
    except Exception:  # noqa: BLE001 - an unreadable file gets a batch of its own and fails there
        size = ("unreadable", str(item.content))
    return (item.settings, item.styles, size)


def _auto_batch(key: tuple) -> int:
    settings, _, size = key
    return photos_per_batch(settings, *size, MAX_BATCH) if isinstance(size[0], int) else 1
