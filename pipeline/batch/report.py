"""The run report: report.json in the output folder, and report.html beside it to read it by,
both rewritten after every item."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..media.files import timestamp, write_json, write_text
from .plan import PlanItem
from .report_html import render_report

REPORT_NAME = "report.json"
HTML_NAME = "report.html"


@dataclass
class ItemRecord:
    job: str
    input: str
    style: str
    output: str
    status: str  # done, skipped, failed, or interrupted (in flight when the run was stopped)
    seconds: float = 0.0
    iterations: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    device: str | None = None
    video: dict | None = None  # frames, fps, duration, audio, seconds per frame, warping errors, seams
    attempts: int = 1  # runs started for it this time: more than 1 when a cluster worker died under it (0: skipped)
    retries: list[str] = field(default_factory=list)  # why each earlier attempt was lost
    thumbnails: dict | None = None  # name -> path (relative to the output folder), width, height; see thumbnails.py

    @classmethod
    def of(cls, item: PlanItem, status: str, seconds: float = 0.0, **details) -> "ItemRecord":
        return cls(job=item.job, input=str(item.content), style=item.style_label, output=str(item.output),
                   status=status, seconds=round(seconds, 3), **details)

    @classmethod
    def skipped(cls, item: PlanItem) -> "ItemRecord":
        """An item whose output is current, with what its sidecar says of the run that made it."""
        record = cls.of(item, "skipped", attempts=0)
        try:
            sidecar = json.loads(Path(item.sidecar).read_text())
            record.iterations, record.losses, record.device = sidecar["iterations"], sidecar["losses"], sidecar["device"]
            record.video = sidecar.get("video")
        except (OSError, ValueError, KeyError):
            pass
        return record


@dataclass
class RunReport:
    manifest: str
    output_dir: Path
    started: str = field(default_factory=timestamp)
    items: list[ItemRecord] = field(default_factory=list)
    finished: str | None = None

    def add(self, record: ItemRecord) -> None:
        self.items.append(record)
        self.write()

    def totals(self) -> dict[str, float]:
        count = {status: sum(r.status == status for r in self.items) for status in ("done", "skipped", "failed")}
        stopped = sum(r.status == "interrupted" for r in self.items)
        count.update({"interrupted": stopped} if stopped else {})
        return {"items": len(self.items), **count, "seconds": round(sum(r.seconds for r in self.items), 2)}

    @property
    def failed(self) -> list[ItemRecord]:
        return [r for r in self.items if r.status == "failed"]

    def finish(self) -> None:
        self.finished = timestamp()
        self.write()

    def as_dict(self) -> dict:
        """What report.json holds, and all report.html is made from."""
        return {
            "manifest": self.manifest,
            "output_dir": str(self.output_dir),
            "started": self.started,
            "finished": self.finished,
            "totals": self.totals(),
            "items": [asdict(r) for r in self.items],
        }

    def write(self) -> Path:
        body = self.as_dict()
        path = write_json(self.output_dir / REPORT_NAME, body)
        write_text(self.output_dir / HTML_NAME, render_report(body))
        return path
