"""Stylizing a clip without flicker (Ruder et al. 2016): frame 0 like a photo, every
later frame warm-started from the previous output warped by optical flow and held
to it by a temporal loss where the flow is reliable. Finished frames are kept
losslessly in a work folder, so a killed run resumes at the frame it reached."""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from .files import file_digest, partial_path, write_json
from .decode import VideoInfo, probe_video, read_frames
from .encode import VideoEncoder, mux_audio
from .flow import FlowEstimator, reliability_mask, warp, warping_error
from .images import fit_long_edge, load_image, resize, save_image, to_pil
from .losses import TemporalTarget
from .settings import StyleSettings, VideoSettings
from .stylize import get_stylizer, prepare_styles

WORK_STATE = "state.json"
PREFETCH = 4


@dataclass
class VideoProgress:
    frame: int  # 1-based frames finished
    frames_hint: int  # from the container header: an estimate
    elapsed: float
    frames_per_second: float
    resumed_from: int


@dataclass
class VideoResult:
    output: Path
    frames_in: int
    frames_out: int
    fps_in: str
    fps_out: str
    duration_in: float | None
    duration_out: float
    audio_kept: bool
    seconds: float
    seconds_per_frame: float
    warping_error_output: float | None
    warping_error_input: float | None
    scene_cuts: list[int] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def flicker_ratio(self) -> float | None:
        """How much more the output changes along the flow than the input itself."""
        if not self.warping_error_input:
            return None
        return self.warping_error_output / self.warping_error_input

    def as_report(self) -> dict:
        body = {k: v for k, v in self.__dict__.items() if k != "output"}
        return {**body, "output": str(self.output), "flicker_ratio": self.flicker_ratio}


@dataclass
class _Frame:
    index: int
    pixels: np.ndarray  # RGB uint8 at the working size
    backward: torch.Tensor | None = None  # flow to the previous frame
    mask: torch.Tensor | None = None  # where that flow is reliable
    cut: bool = False


def stylize_video(
    source: str | Path,
    styles,
    output: str | Path,
    settings: StyleSettings | None = None,
    video: VideoSettings | None = None,
    callback: Callable[[VideoProgress], None] | None = None,
    key: str | None = None,
) -> VideoResult:
    settings, video = settings or StyleSettings(), video or VideoSettings()
    source, output = Path(source), Path(output)
    info = probe_video(source)
    size = working_size(info, settings.size)
    prepared = prepare_styles(styles)
    key = key or _work_key(source, prepared, settings, video)
    work = _WorkFolder(output, key)
    started = time.perf_counter()
    silent = partial_path(output)  # the picture alone; the sound is added once it is complete
    try:
        with VideoEncoder(silent, size[1], size[0], info.fps, video.codec, video.crf) as encoder:
            for pixels in work.finished_frames():
                encoder.write(pixels)
            frames_in = _stylize_frames(source, info, size, prepared, settings, video, work, encoder, callback, started)
            encoder.close()
        duration_out = work.frames_done / info.fps
        audio_kept = mux_audio(silent, source if info.has_audio else None, output, video.start, float(duration_out))
    finally:
        silent.unlink(missing_ok=True)  # on success mux_audio has already consumed it
    result = _result(output, info, frames_in, work, audio_kept, time.perf_counter() - started)
    work.remove()
    return result


def working_size(info: VideoInfo, long_edge: int) -> tuple[int, int]:
    """(height, width) with the clip's aspect, both even as yuv420p needs."""
    height, width = fit_long_edge(info.height, info.width, long_edge)
    return max(2, height - height % 2), max(2, width - width % 2)


def _stylize_frames(source, info, size, styles, settings, video, work, encoder, callback, started) -> int:
    stylizer = get_stylizer(settings)
    previous = work.last_frame()
    frames_in = 0
    frames = _prefetch(_frames_with_flow(source, info, size, video, work.frames_done))
    for frame in frames:
        frames_in += 1
        if frame.index < work.frames_done:
            continue  # finished before a restart; it was decoded only for flow context
        content = _tensor(frame.pixels)
        fresh = previous is None or frame.cut or not video.temporal
        if fresh:
            result = _first_frame(stylizer, content, styles, settings, frame, video)
        else:
            result = _next_frame(stylizer, content, styles, settings, video, previous, frame)
        pixels = _quantise(result)
        measurable = previous is not None and frame.backward is not None and not frame.cut
        errors = _warping_errors(_tensor(pixels), previous, content, work.previous_content, frame) if measurable else None
        work.add(frame, pixels, content, errors)
        encoder.write(pixels)
        previous = _tensor(pixels)  # the rounded frame, exactly what a resumed run reloads
        if callback:
            elapsed = time.perf_counter() - started
            done = frame.index + 1 - work.resumed_from
            callback(VideoProgress(frame.index + 1, info.frame_count_hint, elapsed, done / max(elapsed, 1e-9), work.resumed_from))
    return frames_in


def _first_frame(stylizer, content, styles, settings, frame: _Frame, video: VideoSettings) -> torch.Tensor:
    """A new shot: stylized like a photo; independent frames after the first get frame_iterations."""
    if frame.index == 0 or frame.cut:
        result = stylizer.stylize_batch([content], styles, settings)[0].tensor
        return resize(result, tuple(content.shape[-2:]))  # the photo path rounds sizes its own way
    return stylizer.stylize_frame(content, styles, settings, content, video.frame_iterations).tensor


def _next_frame(stylizer, content, styles, settings, video, previous, frame: _Frame):
    warped = warp(previous, frame.backward)
    # Where the warp cannot be trusted (disocclusions, frame edges) start from the content instead.
    start = frame.mask * warped + (1 - frame.mask) * content
    temporal = TemporalTarget(warped, frame.mask, video.temporal_weight)
    return stylizer.stylize_frame(content, styles, settings, start, video.frame_iterations, temporal).tensor


def _warping_errors(output, previous_output, content, previous_content, frame: _Frame) -> tuple[float, float]:
    return (
        warping_error(output, previous_output, frame.backward, frame.mask),
        warping_error(content, previous_content, frame.backward, frame.mask),
    )


def _frames_with_flow(source: Path, info: VideoInfo, size, video: VideoSettings, resume_at: int) -> Iterator[_Frame]:
    """Decoded, resized frames with flow to their predecessor (skipped where not needed)."""
    estimate = FlowEstimator()
    previous = None
    frames = read_frames(source, start=video.start, end=video.end, max_frames=video.max_frames)
    for index, pixels in enumerate(frames):
        pixels = cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frame = _Frame(index, np.ascontiguousarray(pixels))
        if previous is not None and index >= resume_at:
            frame.backward = estimate(pixels, previous)
            frame.mask = reliability_mask(frame.backward, estimate(previous, pixels))
            frame.cut = _is_cut(pixels, previous, frame.backward, video.scene_cut)
        previous = pixels
        yield frame


def _is_cut(current: np.ndarray, previous: np.ndarray, backward: torch.Tensor, threshold: float) -> bool:
    """A new shot: even after motion compensation the frame differs a lot from the last."""
    if threshold <= 0:
        return False
    residual = (_tensor(current) - warp(_tensor(previous), backward)).abs().mean()
    return float(residual) > threshold


def _prefetch(iterator: Iterator, depth: int = PREFETCH) -> Iterator:
    """Run an iterator on a thread (decode and flow beside the optimisation); re-raise its errors here."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            items.put(error)

    thread = threading.Thread(target=produce, name="stylize-decode", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1).unsqueeze(0).float().div(255.0)


def _quantise(image: torch.Tensor) -> np.ndarray:
    """To 8 bits, as the encoder and the work folder store it."""
    return np.asarray(to_pil(image), dtype=np.uint8)


def _work_key(source: Path, styles, settings: StyleSettings, video: VideoSettings) -> str:
    recipe = {
        "source": file_digest(source),
        "styles": [[s.key, s.weight] for s in styles],
        "settings": settings.output_identity(),
        "video": video.model_dump(mode="json", exclude={"codec", "crf"}),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _result(output: Path, info: VideoInfo, frames_in: int, work: "_WorkFolder", audio_kept: bool, seconds: float) -> VideoResult:
    measured = [e for e in work.errors if e is not None]
    stylized_now = max(1, work.frames_done - work.resumed_from)
    return VideoResult(
        output=output,
        frames_in=frames_in,
        frames_out=work.frames_done,
        fps_in=str(info.fps),
        fps_out=str(info.fps),
        duration_in=info.duration,
        duration_out=round(float(work.frames_done / info.fps), 4),
        audio_kept=audio_kept,
        seconds=round(seconds, 2),
        seconds_per_frame=round(seconds / stylized_now, 3),
        warping_error_output=float(np.mean([e[0] for e in measured])) if measured else None,
        warping_error_input=float(np.mean([e[1] for e in measured])) if measured else None,
        scene_cuts=work.cuts,
        resumed_from=work.resumed_from,
    )


class _WorkFolder:
    """Lossless finished frames and the state to continue: `.{output}.work/` beside the output."""

    def __init__(self, output: Path, key: str):
        self.path = output.with_name(f".{output.name}.work")
        state = self._load_state()
        if state.get("key") != key:
            shutil.rmtree(self.path, ignore_errors=True)
            state = {"key": key, "frames_done": 0, "errors": [], "cuts": []}
        self.path.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.resumed_from = state["frames_done"]
        self.previous_content: torch.Tensor | None = None

    @property
    def frames_done(self) -> int:
        return self.state["frames_done"]

    @property
    def errors(self) -> list:
        return self.state["errors"]

    @property
    def cuts(self) -> list[int]:
        return self.state["cuts"]

    def finished_frames(self) -> Iterator[np.ndarray]:
        for index in range(self.frames_done):
            yield np.asarray(load_image(self._frame_path(index)))

    def last_frame(self) -> torch.Tensor | None:
        if not self.frames_done:
            return None
        index = self.frames_done - 1
        self.previous_content = _tensor(np.asarray(load_image(self.path / f"content_{index:06d}.png")))
        return _tensor(np.asarray(load_image(self._frame_path(index))))

    def add(self, frame: _Frame, pixels: np.ndarray, content: torch.Tensor, errors) -> None:
        save_image(to_pil(_tensor(pixels)), self._frame_path(frame.index))
        # The content frame too: a resumed run measures the input's warping error against it.
        save_image(to_pil(content), self.path / f"content_{frame.index:06d}.png")
        self.previous_content = content
        self.state["frames_done"] = frame.index + 1
        self.state["errors"].append(list(errors) if errors else None)
        if frame.cut:
            self.state["cuts"].append(frame.index)
        write_json(self.path / WORK_STATE, self.state)
        self._drop_content(frame.index - 1)  # only once the state no longer points at it

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _drop_content(self, index: int) -> None:
        (self.path / f"content_{index:06d}.png").unlink(missing_ok=True)

    def _frame_path(self, index: int) -> Path:
        return self.path / f"frame_{index:06d}.png"

    def _load_state(self) -> dict:
        try:
            return json.loads((self.path / WORK_STATE).read_text())
        except (OSError, ValueError):
            return {}
