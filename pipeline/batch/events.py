"""What a run tells its caller (the CLI's display, the studio, a cluster driver). No torch
here: a surface can subclass it without loading the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.stylize import Progress
    from ..video.chain import VideoProgress
    from .plan import PlanItem, PlannedItem
    from .report import ItemRecord


class RunEvents:
    """Override the ones you need; each does nothing by default."""

    def planned(self, items: list["PlannedItem"]) -> None: ...
    def item_started(self, position: int, total: int, item: "PlanItem") -> None: ...
    def progress(self, progress: "Progress") -> None: ...
    def video_progress(self, progress: "VideoProgress") -> None: ...
    def item_finished(self, record: "ItemRecord") -> None: ...
    def note(self, message: str) -> None: ...
