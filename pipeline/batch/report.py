"""The run report, in the output folder: report.jsonl gets a line the moment each item ends
(a journal, true even after a crash), and report.json and report.html, the whole report to
read by, are rewritten every few seconds and when the run ends. Their rewrite costs more as a
run grows, so it comes less often: at most RENDER_SHARE of the run's time goes to it, and an
item costs the same at the ten-thousandth as at the first."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import EnvironmentProblem
from ..media.files import timestamp, write_json, write_text
from .plan import PlanItem
from .report_html import render_report

REPORT_NAME = "report.json"
HTML_NAME = "report.html"
JOURNAL_NAME = "report.jsonl"
RENDER_EVERY_S = 2.0  # the shortest time between two rewrites of report.json and report.html
RENDER_SHARE = 0.05  # of the run's time, at most, spent rewriting them
RESERVE_NAME = ".report.reserve"  # disk held back during a run, so a disk that fills can still take the final report
RESERVE_SLACK = 256 * 1024


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
    _journal: TextIO | None = field(default=None, init=False, repr=False)
    _rendered_at: float = field(default=0.0, init=False, repr=False)
    _render_seconds: float = field(default=0.0, init=False, repr=False)

    def begin(self) -> None:
        """Start the journal, and the report of a run with nothing done yet."""
        try:
            self._journal = open(self.output_dir / JOURNAL_NAME, "w", encoding="utf-8")
            self._append({"manifest": self.manifest, "output_dir": str(self.output_dir), "started": self.started})
        except OSError:
            self._journal = None  # the report files are still tried; finish() says if they fail too
        self._render_quietly()
        self._keep_room()

    def add(self, record: ItemRecord) -> None:
        self.items.append(record)
        self._append(asdict(record))
        if time.monotonic() - self._rendered_at >= max(RENDER_EVERY_S, self._render_seconds / RENDER_SHARE):
            self._render_quietly()
            self._keep_room()

    def totals(self) -> dict[str, float]:
        count = {status: sum(r.status == status for r in self.items) for status in ("done", "skipped", "failed")}
        stopped = sum(r.status == "interrupted" for r in self.items)
        count.update({"interrupted": stopped} if stopped else {})
        return {"items": len(self.items), **count, "seconds": round(sum(r.seconds for r in self.items), 2)}

    @property
    def failed(self) -> list[ItemRecord]:
        return [r for r in self.items if r.status == "failed"]

    def finish(self) -> None:
        """Mark the run finished and write the whole report; EnvironmentProblem if it cannot be."""
        self.finished = timestamp()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        (self.output_dir / RESERVE_NAME).unlink(missing_ok=True)
        try:
            self.write()
        except OSError as error:
            raise EnvironmentProblem(f"{self.output_dir}: could not write {REPORT_NAME} ({error.strerror or error}); "
                                     f"{JOURNAL_NAME} lists every item that ended") from None

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
        started = time.monotonic()
        body = self.as_dict()
        path = write_json(self.output_dir / REPORT_NAME, body)
        write_text(self.output_dir / HTML_NAME, render_report(body))
        self._rendered_at = time.monotonic()
        self._render_seconds = self._rendered_at - started
        return path

    def _render_quietly(self) -> None:
        """A rewrite during the run: one that fails (a full disk) waits for the next, or for finish()."""
        try:
            self.write()
        except OSError:
            self._rendered_at = time.monotonic()

    def _keep_room(self) -> None:
        """Grow the reserve to what rewriting both files takes, and a margin for what the
        run adds to them before it ends; finish() frees it just before the last rewrite."""
        try:
            need = sum((self.output_dir / name).stat().st_size for name in (REPORT_NAME, HTML_NAME)) * 2 + RESERVE_SLACK
            with open(self.output_dir / RESERVE_NAME, "ab") as reserve:
                if reserve.tell() < need:
                    reserve.write(bytes(need - reserve.tell()))
        except OSError:
            pass  # a disk already full: nothing to hold back

    def _append(self, line: dict) -> None:
        if self._journal is None:
            return
        try:
            self._journal.write(json.dumps(line, default=str) + "\n")
            self._journal.flush()
        except OSError:
            pass  # a full disk: the run learns it from the item that could not be written
