"""Joining a clip: its segments' finished frames in order, each later segment cross-faded
in over its burn-in, encoded, given the sound back, and measured across the seams."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import StylizeError
from ..media.decode import FrameTimes, frame_times, rational_fps
from ..media.encode import VideoEncoder, mux_audio
from ..media.files import partial_path
from .clip import Clip, Segment
from .frames import frames_with_flow, warping_errors
from .quality import drift, flags
from .work import WorkFolder


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
    variable_frame_rate: bool = False  # each frame kept at its source time (fps_in/fps_out: the average rate)
    segments: int = 1  # stylized apart (in parallel on a cluster) and joined
    passes: int = 1  # over the frames, alternating direction (video.passes)
    seams: list[dict] = field(default_factory=list)  # per seam: its frame, burn-in, warping error over the cross-fade
    seam_warping_error: float | None = None  # output's warping error on transitions across seams
    within_warping_error: float | None = None  # ... and on those inside segments
    seam_ratio: float | None = None
    flicker_ratio_independent: float | None = None  # along a second flow the optimisation never saw
    sharpness: float | None = None  # the output's mean sharpness over the input's
    drift: dict | None = None  # relative change of style, content, sharpness (against the input, own), first frames to last of the longest shot
    photo_gaps: list[dict] = field(default_factory=list)  # sampled frames against a photo-path stylization of them
    flags: list[str] = field(default_factory=list)  # the bounds it breaks (see quality.py)
    device: str | None = None  # where the frames were stylized; the record's, not the video report's

    @property
    def flicker_ratio(self) -> float | None:
        """How much more the output changes along the flow than the input itself."""
        if not self.warping_error_input:
            return None
        return self.warping_error_output / self.warping_error_input

    def as_report(self) -> dict:
        body = {k: v for k, v in self.__dict__.items() if k not in ("output", "device")}
        return {**body, "output": str(self.output), "flicker_ratio": self.flicker_ratio}


def assemble(clip: Clip) -> VideoResult:
    """Join the finished segments, cross-fading each burn-in with the segment before, encode
    them, add the sound, measure the seams, and remove the work folders."""
    works = [clip.work(segment) for segment in clip.segments]
    unfinished = [segment.number for segment, work in zip(clip.segments, works) if not work.complete]
    if unfinished:
        raise StylizeError(f"{clip.output}: segments {unfinished} of {clip.source.name} are not stylized yet")
    started = time.perf_counter()
    seams = _SeamFrames(clip, works)
    times = _variable_times(clip, sum(max(0, work.end - segment.start) for segment, work in zip(clip.segments, works)))
    # The picture alone, the sound added once it is complete; every temporary named after the output.
    silent = partial_path(clip.output)
    try:
        with VideoEncoder(silent, clip.size[1], clip.size[0], clip.info.fps, clip.video.codec, clip.video.crf,
                          times=times, partial_of=clip.output) as encoder:
            for index, pixels in _joined_frames(clip, works):
                encoder.write(pixels)
                seams.keep(index, pixels)
            frames_out = encoder.close().frames
        audio_from = clip.source if clip.info.has_audio else None
        if times is None:
            audio_start, audio_duration = clip.video.start, float(frames_out / clip.info.fps)
        else:  # from the first frame's own time, for as long as the frames are shown
            audio_start, audio_duration = times.start, times.end
        audio_kept = mux_audio(silent, audio_from, clip.output, audio_start, audio_duration)
    finally:
        silent.unlink(missing_ok=True)  # on success mux_audio has already consumed it
    result = _result(clip, works, frames_out, audio_kept, seams.measure(), time.perf_counter() - started, times)
    shutil.rmtree(clip.work_path(), ignore_errors=True)
    return result


def _variable_times(clip: Clip, frames: int) -> FrameTimes | None:
    """The source times of the clip's selected frames when they are not those of a constant
    frame rate (read again from the source: they are what the work key already pins down);
    None for a constant rate, which is encoded at that rate, or where the times are
    unusable or do not cover exactly the frames stylized."""
    video = clip.video
    times = frame_times(clip.source, video.start, video.end, video.max_frames, clip.info)
    if times is None or len(times.times) != frames or times.constant(clip.info.fps):
        return None
    return times


def _joined_frames(clip: Clip, works: list[WorkFolder]) -> Iterator[tuple[int, np.ndarray]]:
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

    def __init__(self, clip: Clip, works: list[WorkFolder]):
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
        within = [e for seg, work in zip(self.clip.segments, self.works) for e in work.errors_within(seg.start, self.into)]
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

    def _seam_errors(self) -> dict[int, list[float]]:
        """Warping errors (see `warping_errors`) of the transitions into each cross-fade's frames,
        with flow between the content frames, decoded again only around each seam."""
        errors = {}
        for seg in self.clip.segments[1:]:
            around = Segment(seg.number, max(0, seg.fade - 1), seg.fade, seg.start, seg.start + 1)
            for frame in frames_with_flow(self.clip, around, 0, long_term=False):
                index = frame.index
                if index in self.into and frame.previous is not None and index in self.frames and index - 1 in self.frames:
                    errors[index] = warping_errors(self.frames[index], self.frames[index - 1], frame)
        return errors


def _ratio(numerators: list[float], denominators: list[float]) -> float | None:
    return float(np.mean(numerators) / np.mean(denominators)) if numerators and np.mean(denominators) > 0 else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _result(clip: Clip, works: list[WorkFolder], frames_out: int, audio_kept: bool, seams: dict, encode_seconds: float,
            times: FrameTimes | None = None) -> VideoResult:
    measured = seams["all"]
    checked = [e for e in measured if len(e) == 4]
    independent = _ratio([e[2] for e in checked], [e[3] for e in checked])
    scores = [score for seg, work in zip(clip.segments, works) for score in work.scores[max(0, seg.start - work.first):]]
    gaps = [gap for work in works for gap in work.photo_gaps or []]
    cuts = sorted({c for work in works for c in work.cuts})
    drifted = drift(scores, cuts)
    stylized = max(1, sum(work.frames_done for work in works))  # burn-in frames included: they cost the same
    seconds = sum(work.seconds for work in works) + encode_seconds  # compute time over every run and pass, wherever the segments ran
    duration = float(frames_out / clip.info.fps) if times is None else times.end
    return VideoResult(
        output=clip.output,
        frames_in=frames_out,
        frames_out=frames_out,
        fps_in=str(clip.info.fps),
        fps_out=str(clip.info.fps if times is None else rational_fps(frames_out / duration)),
        duration_in=clip.info.duration,
        duration_out=round(duration, 4),
        audio_kept=audio_kept,
        variable_frame_rate=times is not None,
        seconds=round(seconds, 2),
        seconds_per_frame=round(seconds / stylized, 3),
        warping_error_output=_mean([e[0] for e in measured]),
        warping_error_input=_mean([e[1] for e in measured]),
        scene_cuts=cuts,
        resumed_from=sum(work.resumed_from for work in works),
        segments=len(clip.segments),
        passes=max(work.passes_done for work in works),  # an engine whose frames stand alone makes one
        seams=seams["seams"],
        seam_warping_error=seams["seam_warping_error"],
        within_warping_error=seams["within_warping_error"],
        seam_ratio=seams["seam_ratio"],
        flicker_ratio_independent=independent,
        sharpness=_mean([score[2] for score in scores if score]),
        drift=drifted,
        photo_gaps=gaps,
        flags=flags(independent, gaps, drifted),
        device=next((work.device for work in works if work.device), None),
    )
