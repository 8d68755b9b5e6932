"""Stylizing a clip without flicker (Ruder et al. 2016): frame 0 like a photo, every
later frame warm-started from the previous output warped by optical flow and held
to it by a temporal loss where the flow is reliable. Finished frames are kept
losslessly in a work folder, so a killed run resumes at the frame it reached."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
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
from .decode import VideoInfo, frame_index, probe_video, read_frames
from .errors import StylizeError
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
    segments: int = 1  # stylized apart (in parallel on a cluster) and joined
    seams: list[dict] = field(default_factory=list)  # per seam: its frame, burn-in, warping error over the cross-fade
    seam_warping_error: float | None = None  # output's warping error on transitions across seams
    within_warping_error: float | None = None  # ... and on those inside segments
    seam_ratio: float | None = None

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
    """The whole clip here: its segments one after another (one, unless it is longer
    than segment_frames), then the encode. The Ray backend runs the same steps spread out."""
    clip = open_clip(source, styles, output, settings, video, key)
    for segment in clip.segments:
        stylize_segment(clip, segment, callback)
    return assemble(clip)


@dataclass(frozen=True)
class Segment:
    """Frames [first, stop) of a clip, counted from video.start: [first, fade) are burn-in,
    stylized only to settle the temporal chain; over [fade, start) the output cross-fades
    from the segment before to this one; from start on the output is this segment's."""

    number: int
    first: int
    fade: int
    start: int
    stop: int | None  # None: to wherever the clip really ends


@dataclass
class Clip:
    """Everything the segments and the encode of one clip share."""

    source: Path
    output: Path
    info: VideoInfo
    size: tuple[int, int]
    styles: list
    settings: StyleSettings
    video: VideoSettings
    key: str
    segments: list[Segment]

    def work_path(self, segment: Segment | None = None) -> Path:
        folder = self.output.with_name(f".{self.output.name}.work")
        return folder if segment is None or len(self.segments) == 1 else folder / f"segment_{segment.number:03d}"

    def work(self, segment: Segment) -> "_WorkFolder":
        bounds = [segment.first, segment.fade, segment.start, segment.stop]
        key = self.key if len(self.segments) == 1 else hashlib.sha256(json.dumps([self.key, bounds]).encode()).hexdigest()
        return _WorkFolder(self.work_path(segment), key, segment.first)


def open_clip(source, styles, output, settings=None, video=None, key=None) -> Clip:
    settings, video = settings or StyleSettings(), video or VideoSettings()
    source, output = Path(source), Path(output)
    info = probe_video(source)
    prepared = prepare_styles(styles)
    key = key or _work_key(source, prepared, settings, video)
    segments = split_clip(_frames_expected(info, video), video)
    return Clip(source, output, info, working_size(info, settings.size), prepared, settings, video, key, segments)


def split_clip(frames: int, video: VideoSettings) -> list[Segment]:
    """Equal segments of at most segment_frames; each after the first starts segment_burn_in +
    segment_overlap frames early. The count comes from the header, so the last runs to the real end."""
    if not video.segment_frames or frames <= video.segment_frames:
        return [Segment(0, 0, 0, 0, None)]
    count = math.ceil(frames / video.segment_frames)
    starts = [round(k * frames / count) for k in range(count)]
    overlap = min(video.segment_overlap, min(b - a for a, b in zip(starts, starts[1:])))  # fade inside the previous segment
    segments = [Segment(0, 0, 0, 0, starts[1])]
    for k, (start, stop) in enumerate(zip(starts[1:], starts[2:] + [None]), start=1):
        fade = start - overlap
        segments.append(Segment(k, max(0, fade - video.segment_burn_in), fade, start, stop))
    return segments


def _frames_expected(info: VideoInfo, video: VideoSettings) -> int:
    first = frame_index(video.start, info.fps)
    stop = frame_index(video.end, info.fps) if video.end is not None else info.frame_count_hint
    stop = min(stop, info.frame_count_hint)
    return max(0, min(stop - first, video.max_frames or stop))


def working_size(info: VideoInfo, long_edge: int) -> tuple[int, int]:
    """(height, width) with the clip's aspect, both even as yuv420p needs."""
    height, width = fit_long_edge(info.height, info.width, long_edge)
    return max(2, height - height % 2), max(2, width - width % 2)


def stylize_segment(clip: Clip, segment: Segment, callback: Callable[[VideoProgress], None] | None = None) -> int:
    """Stylize the segment's frames into its work folder (resuming where it stopped); returns how many there are."""
    work = clip.work(segment)
    if work.complete:
        return work.frames_done
    began = started = time.perf_counter()
    work.begin()
    stylizer = get_stylizer(clip.settings)
    previous = work.last_frame()
    frames = _prefetch(_frames_with_flow(clip, segment, work.frames_done))
    for frame in frames:
        content = _tensor(frame.pixels)
        fresh = previous is None or frame.cut or not clip.video.temporal
        if fresh:
            result = _first_frame(stylizer, content, clip.styles, clip.settings, frame, clip.video, segment)
        else:
            result = _next_frame(stylizer, content, clip.styles, clip.settings, clip.video, previous, frame)
        pixels = _quantise(result)
        measurable = previous is not None and frame.backward is not None and not frame.cut
        errors = _warping_errors(_tensor(pixels), previous, content, work.previous_content, frame) if measurable else None
        work.add(frame, pixels, content, errors, time.perf_counter() - started)
        started = time.perf_counter()
        previous = _tensor(pixels)  # the rounded frame, exactly what a resumed run reloads
        if callback:
            elapsed = time.perf_counter() - began
            done = work.frames_done - work.resumed_from
            callback(VideoProgress(frame.index + 1, clip.info.frame_count_hint, elapsed, done / max(elapsed, 1e-9), work.resumed_from))
    work.finish()
    return work.frames_done


def _first_frame(stylizer, content, styles, settings, frame: _Frame, video: VideoSettings, segment: Segment) -> torch.Tensor:
    """A new shot or segment: stylized like a photo; independent frames after the first get frame_iterations."""
    if frame.index == segment.first or frame.cut:
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


def _frames_with_flow(clip: Clip, segment: Segment, done: int) -> Iterator[_Frame]:
    """The segment's decoded, resized frames with flow to their predecessor (not needed
    for frames already done before a restart, which are passed over)."""
    video, size = clip.video, clip.size
    estimate = FlowEstimator()
    resume_at = segment.first + done
    skip = max(0, resume_at - 1)  # the last frame done is decoded again, for flow to the next
    count = None if segment.stop is None else segment.stop - skip
    if count is not None and count <= 0:
        return
    frames = read_frames(clip.source, start=video.start, end=video.end, max_frames=video.max_frames, skip=skip)
    previous = None
    for index, pixels in enumerate(itertools.islice(frames, count), start=skip):
        pixels = np.ascontiguousarray(cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA))
        if index >= resume_at:
            frame = _Frame(index, pixels)
            if previous is not None and index > segment.first:
                frame.backward = estimate(pixels, previous)
                frame.mask = reliability_mask(frame.backward, estimate(previous, pixels))
                frame.cut = _is_cut(pixels, previous, frame.backward, video.scene_cut)
            yield frame
        previous = pixels


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


def assemble(clip: Clip) -> VideoResult:
    """Join the finished segments, cross-fading each burn-in with the segment before, encode
    them, add the sound, measure the seams, and remove the work folders."""
    works = [clip.work(segment) for segment in clip.segments]
    unfinished = [segment.number for segment, work in zip(clip.segments, works) if not work.complete]
    if unfinished:
        raise StylizeError(f"{clip.output}: segments {unfinished} of {clip.source.name} are not stylized yet")
    started = time.perf_counter()
    seams = _SeamFrames(clip, works)
    silent = partial_path(clip.output)  # the picture alone; the sound is added once it is complete
    try:
        with VideoEncoder(silent, clip.size[1], clip.size[0], clip.info.fps, clip.video.codec, clip.video.crf) as encoder:
            for index, pixels in _joined_frames(clip, works):
                encoder.write(pixels)
                seams.keep(index, pixels)
            frames_out = encoder.close().frames
        audio_from = clip.source if clip.info.has_audio else None
        audio_kept = mux_audio(silent, audio_from, clip.output, clip.video.start, float(frames_out / clip.info.fps))
    finally:
        silent.unlink(missing_ok=True)  # on success mux_audio has already consumed it
    result = _result(clip, works, frames_out, audio_kept, seams.measure(), time.perf_counter() - started)
    shutil.rmtree(clip.work_path(), ignore_errors=True)
    return result


def _joined_frames(clip: Clip, works: list["_WorkFolder"]) -> Iterator[tuple[int, np.ndarray]]:
    """Each segment's own frames in order; over the next segment's burn-in, a linear
    cross-fade from this segment to the next."""
    for k, (segment, work) in enumerate(zip(clip.segments, works)):
        following = works[k + 1] if k + 1 < len(works) and works[k + 1].frames_done else None
        if following and work.end != clip.segments[k + 1].start:
            raise StylizeError(f"{clip.output}: segment {k} of {clip.source.name} ends at frame {work.end}, "
                               f"not where segment {k + 1} starts ({clip.segments[k + 1].start}); delete {clip.work_path()}")
        for index in range(segment.start, work.end):
            pixels = work.frame(index)
            after = clip.segments[k + 1] if following else None
            if after and after.fade <= index < following.end:
                weight = (index - after.fade + 1) / (after.start - after.fade + 1)
                blend = (1 - weight) * pixels.astype(np.float32) + weight * following.frame(index).astype(np.float32)
                pixels = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
            yield index, pixels


class _SeamFrames:
    """The output frames around each seam, kept while encoding, then measured against
    flow between the content frames: the warping error across seams and within segments."""

    def __init__(self, clip: Clip, works: list["_WorkFolder"]):
        self.clip, self.works = clip, works
        # Transitions into these frames cross a seam: into the cross-fade, through it, and out of it.
        self.into = sorted({i for seg, work in zip(clip.segments[1:], works[1:]) for i in range(seg.fade, min(seg.start + 1, work.end))})
        self.wanted = set(self.into) | {i - 1 for i in self.into}
        self.frames: dict[int, np.ndarray] = {}

    def keep(self, index: int, pixels: np.ndarray) -> None:
        if index in self.wanted:
            self.frames[index] = pixels

    def measure(self) -> dict:
        cuts = {c for work in self.works for c in work.cuts}
        seam = {i: e for i, e in self._seam_errors().items() if i not in cuts}
        within = [e for seg, work in zip(self.clip.segments, self.works) for e in work.errors_within(seg, self.into)]
        per_seam = []
        for seg in self.clip.segments[1:]:
            errors = [seam[i] for i in range(seg.fade, seg.start + 1) if i in seam]
            if errors:
                per_seam.append({"frame": seg.start, "burn_in": seg.fade - seg.first, "overlap": seg.start - seg.fade,
                                 "warping_error": _mean([e[0] for e in errors]),
                                 "worst_warping_error": max(e[0] for e in errors)})
        seam_output, within_output = _mean([e[0] for e in seam.values()]), _mean([e[0] for e in within])
        return {
            "all": list(seam.values()) + within,
            "seams": per_seam,
            "seam_warping_error": seam_output,
            "within_warping_error": within_output,
            "seam_ratio": seam_output / within_output if seam_output is not None and within_output else None,
        }

    def _seam_errors(self) -> dict[int, tuple[float, float]]:
        """(output, input) warping errors of the transitions into each cross-fade's frames,
        with flow between the content frames, decoded again only around each seam."""
        errors = {}
        for seg in self.clip.segments[1:]:
            around = Segment(seg.number, max(0, seg.fade - 1), seg.fade, seg.start, seg.start + 1)
            previous = None
            for frame in _frames_with_flow(self.clip, around, 0):
                index = frame.index
                if index in self.into and frame.backward is not None and index in self.frames and index - 1 in self.frames:
                    errors[index] = _warping_errors(_tensor(self.frames[index]), _tensor(self.frames[index - 1]),
                                                    _tensor(frame.pixels), _tensor(previous), frame)
                previous = frame.pixels
        return errors


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _result(clip: Clip, works: list["_WorkFolder"], frames_out: int, audio_kept: bool, seams: dict, encode_seconds: float) -> VideoResult:
    measured = seams["all"]
    stylized_now = max(1, sum(work.frames_done - work.resumed_from for work in works))
    seconds = sum(work.seconds for work in works) + encode_seconds  # compute time, wherever the segments ran
    return VideoResult(
        output=clip.output,
        frames_in=frames_out,
        frames_out=frames_out,
        fps_in=str(clip.info.fps),
        fps_out=str(clip.info.fps),
        duration_in=clip.info.duration,
        duration_out=round(float(frames_out / clip.info.fps), 4),
        audio_kept=audio_kept,
        seconds=round(seconds, 2),
        seconds_per_frame=round(seconds / stylized_now, 3),
        warping_error_output=_mean([e[0] for e in measured]),
        warping_error_input=_mean([e[1] for e in measured]),
        scene_cuts=sorted({c for work in works for c in work.cuts}),
        resumed_from=sum(work.resumed_from for work in works),
        segments=len(clip.segments),
        seams=seams["seams"],
        seam_warping_error=seams["seam_warping_error"],
        within_warping_error=seams["within_warping_error"],
        seam_ratio=seams["seam_ratio"],
    )


class _WorkFolder:
    """One segment's lossless finished frames (named by frame index) and the state to
    continue: `.{output}.work/` beside the output, with a `segment_NNN/` per segment of a long clip."""

    def __init__(self, path: Path, key: str, first: int = 0):
        self.path = path
        state = self._load_state()
        if state.get("key") != key:
            shutil.rmtree(self.path, ignore_errors=True)
            state = {"key": key, "first": first, "frames_done": 0, "errors": [], "cuts": [], "complete": False,
                     "seconds": 0.0, "resumed_from": 0}
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

    def begin(self) -> None:
        self.state["resumed_from"] = self.frames_done

    def errors_within(self, segment: Segment, seam_frames: list[int]) -> list:
        """Measured (output, input) warping errors into this segment's own output frames, crossing no seam."""
        skip = set(seam_frames)
        return [e for j, e in enumerate(self.errors) if e is not None and self.first + j > segment.start and self.first + j not in skip]

    def frame(self, index: int) -> np.ndarray:
        return np.asarray(load_image(self._frame_path(index)))

    def last_frame(self) -> torch.Tensor | None:
        if not self.frames_done:
            return None
        index = self.end - 1
        self.previous_content = _tensor(np.asarray(load_image(self.path / f"content_{index:06d}.png")))
        return _tensor(self.frame(index))

    def add(self, frame: _Frame, pixels: np.ndarray, content: torch.Tensor, errors, seconds: float) -> None:
        save_image(to_pil(_tensor(pixels)), self._frame_path(frame.index))
        # The content frame too: a resumed run measures the input's warping error against it.
        save_image(to_pil(content), self.path / f"content_{frame.index:06d}.png")
        self.previous_content = content
        self.state["frames_done"] = frame.index + 1 - self.first
        self.state["errors"].append(list(errors) if errors else None)
        self.state["seconds"] += seconds
        if frame.cut:
            self.state["cuts"].append(frame.index)
        write_json(self.path / WORK_STATE, self.state)
        self._drop_content(frame.index - 1)  # only once the state no longer points at it

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
