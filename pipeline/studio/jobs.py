"""What the studio runs: one photo or one clip, stylized on a background thread, its
progress a stream of typed snapshots. No Gradio here: the page only shows what this yields.

    LiveJob(work)           runs work(publish) on a thread; `updates()` streams what it publishes
    stylize_photo(...)      -> PhotoOutcome    previews as the image forms, then the result
    stylize_clip(...)       -> ClipOutcome     the latest frames as they finish, then the video
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..engine.device import gpu_memory_note
from ..engine.engines import stylize_image_file
from ..engine.stylize import Progress
from ..video.chain import VideoProgress
from ..video.join import VideoResult
from ..video.stylize import stylize_video
from .commands import Recipe, image_command, manifest_job, video_command
from .folders import StudioFolders

# A preview costs one copy from the device and a PNG; a few a second never slow the optimiser measurably.
PREVIEW_EVERY_S = 0.3
STRIP_FRAMES = 6
_FINISHED = object()

Publish = Callable[[Any], None]


class Cancelled(Exception):
    """The page that asked for the job went away, or pressed Cancel."""


@dataclass
class Snapshot:
    fraction: float  # of the whole job, 0..1
    status: str  # one line: where it is, how fast, memory
    preview: np.ndarray | None = None  # HxWx3 uint8: the image as it forms
    strip: list[np.ndarray] | None = None  # the latest frames of a clip


@dataclass
class PhotoOutcome:
    output: Path
    width: int
    height: int
    summary: str
    command: str
    manifest_job: str


@dataclass
class ClipOutcome:
    output: Path
    result: VideoResult
    summary: str
    command: str
    manifest_job: str


class LiveJob:
    """`work(publish)` on its own thread. `publish` queues a snapshot, or raises Cancelled once
    the job is cancelled, which unwinds the work at its next report (its output lock released,
    nothing half-written published)."""

    def __init__(self, work: Callable[[Publish], Any]):
        self.cancelled = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outcome: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True, name="studio-job")
        self._thread.start()

    def _run(self, work) -> None:
        try:
            self._outcome = work(self._publish)
        except BaseException as error:  # handed to the page's coroutine, which raises it there
            self._error = error
        finally:
            self._queue.put(_FINISHED)

    def _publish(self, snapshot) -> None:
        if self.cancelled.is_set():
            raise Cancelled()
        self._queue.put(snapshot)

    async def updates(self):
        """The snapshots as they come (only the newest when several wait), then the outcome.
        Closing this stream early (the tab closed) cancels the job and waits for it to stop,
        so the device is free before the next job in the queue starts."""
        try:
            finished = False
            while not finished:
                pending = self._drain()
                finished = _FINISHED in pending
                snapshots = [item for item in pending if item is not _FINISHED]
                if snapshots:
                    yield snapshots[-1]
                elif not finished:
                    await asyncio.sleep(0.05)
        finally:
            self.cancelled.set()
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error
        yield self._outcome

    def _drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items


class StepWatch:
    """The optimiser's callback: a snapshot at most every PREVIEW_EVERY_S. Reading the image
    or the losses waits for the device, so it happens only then, not every step."""

    def __init__(self, publish: Publish):
        self.publish, self.steps, self.first, self.last = publish, 0, 0.0, 0.0

    def __call__(self, p: Progress) -> None:
        self.steps += 1
        now = time.perf_counter()
        self.first = self.first or now  # speed counts from the first step: loading the network is not stepping
        if now - self.last < PREVIEW_EVERY_S and p.iteration != 1:
            return
        self.last = now
        fraction = (p.level + (p.tile + p.iteration / p.iterations) / p.tiles) / p.levels
        where = f"scale {p.level + 1}/{p.levels}" + (f" · tile {p.tile + 1}/{p.tiles}" if p.tiles > 1 else "")
        speed = f"{(self.steps - 1) / (now - self.first):.1f} steps/s" if self.steps > 1 else None
        notes = [where, f"step {p.iteration}/{p.iterations}", speed, f"loss {p.losses['total']:.4g}", gpu_memory_note()]
        self.publish(Snapshot(fraction, " · ".join(filter(None, notes)), _as_pixels(p.image)))


class FrameWatch:
    """The clip's callback: frames done, speed, time left and the latest frames."""

    def __init__(self, publish: Publish):
        self.publish, self.last = publish, 0.0
        self.strip: collections.deque = collections.deque(maxlen=STRIP_FRAMES)

    def __call__(self, p: VideoProgress) -> None:
        if p.image is not None:
            self.strip.append(p.image)
        now = time.perf_counter()
        if now - self.last < PREVIEW_EVERY_S and p.frame < p.frames_hint:
            return
        self.last = now
        left = max(p.frames_hint - p.frame, 0) / p.frames_per_second if p.frames_per_second else 0.0
        notes = [f"pass {p.pass_number}/{p.passes}" if p.passes > 1 else "", f"frame {p.frame}/~{p.frames_hint}", f"{p.frames_per_second:.2f} frames/s", f"~{left:.0f} s left", gpu_memory_note()]
        self.publish(Snapshot(min(p.frame / max(p.frames_hint, 1), 1.0), " · ".join(filter(None, notes)), strip=list(self.strip)))


def stylize_photo(content: Path, recipe: Recipe, folders: StudioFolders, publish: Publish) -> PhotoOutcome:
    content = folders.keep_upload(content)
    output = folders.new_output("images", content.stem, ".png")
    publish(Snapshot(0.0, "loading VGG19 and the styles"))
    result = stylize_image_file(content, list(recipe.styles), output, recipe.settings(), callback=StepWatch(publish))
    losses = ", ".join(f"{name} {value:.4g}" for name, value in result.losses.items() if value)
    summary = (f"{result.image.width}×{result.image.height} in {result.seconds:.1f} s on {result.device}, "
               f"{result.iterations} steps; losses: {losses}")
    return PhotoOutcome(output, result.image.width, result.image.height, summary,
                        image_command(content, recipe, output), manifest_job(content, recipe))


def stylize_clip(source: Path, recipe: Recipe, folders: StudioFolders, publish: Publish) -> ClipOutcome:
    source = folders.keep_upload(source)
    output = folders.new_output("videos", source.stem, ".mp4")
    publish(Snapshot(0.0, "loading VGG19 and the styles; the first frame is stylized like a photo"))
    result = stylize_video(source, list(recipe.styles), output, recipe.settings(), recipe.video_settings(), FrameWatch(publish))
    flicker = f"flicker ratio {result.flicker_ratio:.2f}" if result.flicker_ratio is not None else "flicker ratio: not measured"
    summary = (f"{result.frames_out} frames at {float(Fraction(result.fps_out)):.2f} fps, audio {'kept' if result.audio_kept else 'none'}, "
               f"{result.seconds_per_frame:.2f} s/frame; {flicker} (output's warping error over the input's; below 1 is steadier than the input)")
    if result.flicker_ratio_independent is not None:
        summary += f"; along an independent flow {result.flicker_ratio_independent:.2f}"
    summary += "".join(f"\nwarning: {flag}" for flag in result.flags)
    return ClipOutcome(output, result, summary, video_command(source, recipe, output), manifest_job(source, recipe))


def _as_pixels(image) -> np.ndarray | None:
    if image is None:
        return None
    return image[0].detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
