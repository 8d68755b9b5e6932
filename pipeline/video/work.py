"""A segment's work folder: its lossless finished frames (named by frame index) and the
state to continue from, so a killed run resumes at the frame it reached."""

from __future__ import annotations

import collections
import json
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ..media.files import write_json
from ..media.images import load_image, save_image

WORK_STATE = "state.json"
# The first pass's state is written at most this often (and whenever a run stops or a pass ends):
# written on every frame it grew with the clip, O(n^2) over a long one. A run killed outright
# redoes the frames saved after the last write.
STATE_EVERY_S = 1.0
# Frames are kept as PNG at zlib level 1: measured at 320x240, 4.3 ms a frame and 83 KB against
# 15 ms and 75 KB at PIL's default of 6 (level 0, no compression: 2.7 ms but 225 KB).
FRAME_COMPRESSION = 1
# The first pass's frames are written on a thread of their own, beside the network (zlib and the
# disk release the GIL), at most this many behind; a frame joins the state once its file is written.
UNSAVED_FRAMES = 8
_FRAME_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylize-work-frames")


class WorkFolder:
    """One segment's lossless finished frames (named by frame index) and the state to
    continue: `.{output}.work/` beside the output, with a `segment_NNN/` per segment of a long clip."""

    def __init__(self, path: Path, key: str, first: int = 0):
        self.path = path
        state = self._load_state()
        if state.get("key") != key or not self._frames_present(state):
            shutil.rmtree(self.path, ignore_errors=True)
            state = {"key": key, "first": first, "frames_done": 0, "errors": [], "scores": [], "cuts": [],
                     "photo_gaps": None, "passes_done": 0, "pass_frames": 0, "complete": False, "seconds": 0.0, "resumed_from": 0, "device": None}
        self.path.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.first = state["first"]
        self._saved_at = float("-inf")  # the first frame's state is written at once
        self._unsaved: collections.deque[tuple[Future, tuple]] = collections.deque()

    @property
    def frames_done(self) -> int:
        return self.state["frames_done"]

    @property
    def end(self) -> int:
        """One past the last frame done."""
        return self.first + self.frames_done

    @property
    def complete(self) -> bool:
        return self.state["complete"]

    @property
    def resumed_from(self) -> int:
        return self.state["resumed_from"]

    @property
    def seconds(self) -> float:
        return self.state["seconds"]

    @property
    def errors(self) -> list:
        return self.state["errors"]

    @property
    def cuts(self) -> list[int]:
        return self.state["cuts"]

    @property
    def device(self) -> str | None:
        """Where the frames were stylized (the latest run's device)."""
        return self.state.get("device")

    def begin(self, device: str) -> None:
        self.state["resumed_from"] = self.frames_done
        self.state["device"] = device

    def errors_within(self, own_from: int, seam_frames: list[int]) -> list:
        """Measured warping errors (see `frames.warping_errors`) into this segment's own output frames
        (from `own_from` on), crossing no seam."""
        skip = set(seam_frames)
        return [e for j, e in enumerate(self.errors) if e is not None and self.first + j > own_from and self.first + j not in skip]

    def frame(self, index: int, pass_number: int | None = None) -> np.ndarray:
        """A frame as the last finished pass left it (or as pass `pass_number` did)."""
        return np.asarray(load_image(self._frame_path(index, pass_number or self.passes_done)))

    @property
    def scores(self) -> list[list[float | None] | None]:
        """The judge's [style, content, sharpness over the input's, own sharpness] of every frame done
        (three measures in states written before own sharpness was kept); None for a frame not
        scored (an engine whose frames stand alone scores a sample), and a style of None where
        the judge had no painting."""
        return self.state["scores"]

    @property
    def photo_gaps(self) -> list[dict] | None:
        return self.state["photo_gaps"]

    def recent_frames(self, count: int) -> dict[int, np.ndarray]:
        """The last `count` frames done, by index: what the next frame is held to."""
        return {index: self.frame(index) for index in range(max(self.first, self.end - count), self.end)}

    def add(self, index: int, cut: bool, pixels: np.ndarray, errors: list[float] | None, score: list[float] | None,
            seconds: float) -> None:
        """A frame of the first pass, with its figures (None where they were not measured), written
        behind (see UNSAVED_FRAMES); the state is written now and then (see STATE_EVERY_S), and
        whole by `save_state`."""
        saving = _FRAME_WRITER.submit(self._save_frame, pixels, self._frame_path(index))
        self._unsaved.append((saving, (index, cut, errors, score, seconds)))
        self._count_saved(waiting_for=len(self._unsaved) - UNSAVED_FRAMES)
        if time.monotonic() - self._saved_at >= STATE_EVERY_S:
            self._write_state()

    def save_state(self) -> None:
        """Every frame added, once written, in the state on disk."""
        self._count_saved(waiting_for=len(self._unsaved))
        self._write_state()

    def _count_saved(self, waiting_for: int) -> None:
        """Frames whose files are written join the state, in order; the first `waiting_for` are waited for."""
        while self._unsaved and (waiting_for > 0 or self._unsaved[0][0].done()):
            saving, (index, cut, errors, score, seconds) = self._unsaved.popleft()
            saving.result()  # a write that failed (a full disk) fails here
            self.state["frames_done"] = index + 1 - self.first
            self.state["errors"].append(errors)
            self.state["scores"].append(score)
            self.state["seconds"] += seconds
            if cut:
                self.state["cuts"].append(index)
            waiting_for -= 1

    def _write_state(self) -> None:
        write_json(self.path / WORK_STATE, self.state)
        self._saved_at = time.monotonic()

    @property
    def passes_done(self) -> int:
        return self.state["passes_done"]

    @property
    def pass_frames(self) -> int:
        """Frames the pass under way has replaced."""
        return self.state["pass_frames"]

    def replace(self, index: int, pixels: np.ndarray, seconds: float) -> None:
        """The pass under way's result for a frame, kept apart from the last pass's until the
        pass ends, so a resumed pass starts each frame from exactly what it would have."""
        path = self._frame_path(index, self.passes_done + 1)
        path.parent.mkdir(exist_ok=True)
        self._save_frame(pixels, path)
        self.state["pass_frames"] += 1
        self.state["seconds"] += seconds
        self._write_state()

    def pass_done(self, number: int) -> None:
        self.state.update(passes_done=number, pass_frames=0)
        self.save_state()
        if number > 1:  # the pass before is no longer read
            for index in range(self.first, self.end):
                self._frame_path(index, number - 1).unlink(missing_ok=True)

    def remeasured(self, errors: list, scores: list[list[float]]) -> None:
        """Figures measured again on the frames of the last pass."""
        self.state.update(errors=errors, scores=scores)
        self._write_state()

    def finish(self, photo_gaps: list[dict]) -> None:
        self.state["photo_gaps"] = photo_gaps
        self.state["complete"] = True
        self._write_state()

    @staticmethod
    def _save_frame(pixels: np.ndarray, path: Path) -> None:
        save_image(Image.fromarray(pixels), path, png_compression=FRAME_COMPRESSION)

    def _frame_path(self, index: int, pass_number: int = 1) -> Path:
        folder = self.path if pass_number <= 1 else self.path / f"pass_{pass_number}"
        return folder / f"frame_{index:06d}.png"

    def _frames_present(self, state: dict) -> bool:
        """Every frame the state counts as finished is on disk: a folder something else
        emptied under it starts again rather than failing on each rerun."""
        try:
            first, done, passes = int(state["first"]), int(state["frames_done"]), int(state["passes_done"])
        except (KeyError, TypeError, ValueError):
            return False
        return all(self._frame_path(index, max(passes, 1)).is_file() for index in range(first, first + done))

    def _load_state(self) -> dict:
        try:
            return json.loads((self.path / WORK_STATE).read_text())
        except (OSError, ValueError):
            return {}
