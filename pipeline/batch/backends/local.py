"""The local backend: every task in this process, one after another."""

from __future__ import annotations

from typing import Iterator

from ..events import RunEvents
from ..plan import PlannedItem
from ..report import ItemRecord
from ..tasks import execute, work_units


def run_local(todo: list[PlannedItem], events: RunEvents, batch_size: int | None) -> Iterator[ItemRecord]:
    """Each unit's tasks in turn; a clip's first record (a failed segment, or its join) ends it."""
    position = 0
    for unit in work_units(todo, batch_size):
        for planned in unit[0].items:
            position += 1
            events.item_started(position, len(todo), planned.item)
        for task in unit:
            records = execute(task, events)
            yield from records
            if records:
                break
