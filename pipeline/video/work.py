"""A segment's work folder: its lossless finished frames (named by frame index) and the
state to continue from, so a killed run resumes at the frame it reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..engine.tensors import as_tensor, to_pil
from ..media.files import write_json
from ..media.images import load_image, save_image

WORK_STATE = "state.json"


class WorkFolder:
    """One segment's lossless finished frames (named by frame index) and the state to
    continue: `.{output}.work/` beside the output, with a `segment_NNN/` per segment of a long clip."""

    def __init__(self, path: Path, key: str, first: int = 0):
        self.path = path
        state = self._load_state()
        if state.get("key") != key:
            shutil.rmtree(self.path, ignore_errors=True)
            state = {"key": key, "first": first, "frames_done": 0, "errors": [], "cuts": [], "complete": False,
                     "seconds": 0.0, "resumed_from": 0, "device": None}
        self.path.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.first = state["first"]
        self.previous_content: torch.Tensor | None = None

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
        """Measured (output, input) warping errors into this segment's own output frames
        (from `own_from` on), crossing no seam."""
        skip = set(seam_frames)
        return [e for j, e in enumerate(self.errors) if e is not None and self.first + j > own_from and self.first + j not in skip]

    def frame(self, index: int) -> np.ndarray:
        return np.asarray(load_image(self._frame_path(index)))

    def last_frame(self) -> torch.Tensor | None:
        if not self.frames_done:
            return None
        index = self.end - 1
        self.previous_content = as_tensor(load_image(self.path / f"content_{index:06d}.png"))
        return as_tensor(self.frame(index))

    def add(self, index: int, cut: bool, pixels: np.ndarray, content: torch.Tensor, errors, seconds: float) -> None:
        save_image(Image.fromarray(pixels), self._frame_path(index))
        # The content frame too: a resumed run measures the input's warping error against it.
        save_image(to_pil(content), self.path / f"content_{index:06d}.png")
        self.previous_content = content
        self.state["frames_done"] = index + 1 - self.first
        self.state["errors"].append(list(errors) if errors else None)
        self.state["seconds"] += seconds
        if cut:
            self.state["cuts"].append(index)
        write_json(self.path / WORK_STATE, self.state)
        self._drop_content(index - 1)  # only once the state no longer points at it

    def finish(self) -> None:
        self.state["complete"] = True
        write_json(self.path / WORK_STATE, self.state)

    def _drop_content(self, index: int) -> None:
        (self.path / f"content_{index:06d}.png").unlink(missing_ok=True)

    def _frame_path(self, index: int) -> Path:
        return self.path / f"frame_{index:06d}.png"

    def _load_state(self) -> dict:
        try:
            return json.loads((self.path / WORK_STATE).read_text())
        except (OSError, ValueError):
            return {}
