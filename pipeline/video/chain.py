"""The flow-warped frame chain (Ruder et al. 2016): frame 0 of a segment like a photo,
every later frame warm-started from the previous output warped by optical flow and
held to it by a temporal loss where the flow is reliable; then any later passes (passes.py),
and the figures that say how the clip holds up (quality.py). An engine whose frames stand
alone (a trained model) skips the chain: its frames go through in batches, with the same
figures measured on a sample."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..engine.engines import Engine, engine_for
from ..engine.losses import TemporalTarget
from ..engine.stylize import StylizeResult
from ..engine.tensors import as_tensor, resize, to_pixels
from .clip import Clip, Segment
from .flow import inside_frame, warp
from .frames import Frame, frames_with_flow, jumps, prefetch, sampled_frames, warping_errors
from .passes import later_passes
from .quality import measure_again, photo_gaps, score_frame
from .work import WorkFolder

# An engine whose frames stand alone paints this many at once (one size: a clip's frames share it).
# On the CPU it changes little (bf16 at 320x240, one thread, under load: 26.8, 26.3 and 27.8 ms a
# frame in batches of 1, 4 and 8); on a GPU one call per frame would leave it idle between calls.
BATCH = 4
# ... and is measured on one frame in SAMPLE_EVERY: the warping errors of the transition into it
# along both flows, and its score (see score_frame). A measured transition costs what about seven
# frames of the network do (bikes.mp4 at 320 px on a 2-core CPU beside another process: DIS both
# ways at the 512 px flow size and Farneback both ways, 120 ms, against 17 ms a frame), so one in
# 8 took nearly as long as the network on the decode thread and one in 16 half as long: 29 against
# 35 fps end to end, the mean of two runs each.
SAMPLE_EVERY = 16


@dataclass
class VideoProgress:
    frame: int  # 1-based frames finished (in this pass)
    frames_hint: int  # from the container header in the first pass: an estimate
    elapsed: float
    frames_per_second: float
    resumed_from: int
    image: np.ndarray | None = None  # the frame just stylized, HxWx3 uint8, for a live view
    pass_number: int = 1
    passes: int = 1

    def portable(self) -> "VideoProgress":
        """A light copy for another process: no frame."""
        return dataclasses.replace(self, image=None)


def stylize_segment(clip: Clip, segment: Segment, callback: Callable[[VideoProgress], None] | None = None) -> int:
    """Stylize the segment's frames into its work folder (resuming where it stopped) by the
    clip's engine: the forward chain, any later passes, then a few frames again as photos to
    measure against; or, for an engine whose frames stand alone, every frame in batches with
    sampled checks. Returns how many frames there are."""
    work = clip.work(segment)
    if work.complete:
        return work.frames_done
    engine = engine_for(clip.styles, clip.settings, clip.model)
    work.begin(str(engine.device))
    progress = _Progress(clip, work, callback, clip.video.passes if engine.chained else 1)
    if work.passes_done == 0:
        first_pass = _forward_chain if engine.chained else _independent_frames
        try:
            first_pass(clip, segment, work, engine, progress)
        finally:
            work.save_state()  # however the pass ended: the frames done are what a rerun resumes from
        work.pass_done(1)
    if engine.chained and clip.video.passes > 1:
        later_passes(clip, work, engine, progress)
        measure_again(clip, segment, work, engine.styles)
    # Photo gaps compare a video's frames with the same engine's photos of them: for frames that
    # stand alone they are those photos by construction, so there is nothing to measure (the
    # benchmark compares a model's frames with the optimiser's instead, at a minute a frame).
    work.finish(photo_gaps(clip, segment, work, engine) if engine.chained else [])
    return work.frames_done


class _Progress:
    """Each finished frame, as a VideoProgress for the callback."""

    def __init__(self, clip: Clip, work: WorkFolder, callback: Callable[[VideoProgress], None] | None, passes: int):
        self.clip, self.work, self.callback, self.passes = clip, work, callback, passes
        self.began, self.frames = time.perf_counter(), 0

    def __call__(self, pass_number: int, frame: int, frames_hint: int, pixels: np.ndarray) -> None:
        self.frames += 1
        if self.callback:
            elapsed = time.perf_counter() - self.began
            self.callback(VideoProgress(frame, frames_hint, elapsed, self.frames / max(elapsed, 1e-9), self.work.resumed_from,
                                        pixels, pass_number, self.passes))


def _forward_chain(clip: Clip, segment: Segment, work: WorkFolder, engine: Engine, progress: _Progress) -> None:
    """The first pass, frame after frame to the segment's end, each scored as it is made."""
    started = time.perf_counter()
    reach = jumps(clip.video)[-1]
    outputs = work.recent_frames(reach)  # what the next frames are held to
    for frame in prefetch(frames_with_flow(clip, segment, work.frames_done)):
        content = as_tensor(frame.pixels)
        if not frame.references or not clip.video.temporal:
            result = _first_frame(content, engine, clip, frame)
        else:
            result = _next_frame(content, engine, clip, outputs, frame)
        pixels = to_pixels(result)
        errors = warping_errors(pixels, outputs[frame.index - 1], frame) if frame.previous is not None else None
        score = score_frame(pixels, frame.pixels, engine.styles, clip.settings).as_list()
        work.add(frame.index, frame.cut, pixels, errors, score, time.perf_counter() - started)
        started = time.perf_counter()
        outputs[frame.index] = pixels  # the rounded frame, exactly what a resumed run reloads
        outputs.pop(frame.index - reach, None)
        progress(1, frame.index + 1, clip.info.frame_count_hint, pixels)


def _first_frame(content: torch.Tensor, engine: Engine, clip: Clip, frame: Frame) -> torch.Tensor:
    """A new shot or segment: stylized like a photo; independent frames after the first get frame_iterations."""
    if not frame.references:  # the segment's first frame, or a cut
        result = engine.stylize([content])[0].tensor
        return resize(result, tuple(content.shape[-2:]))  # the photo path rounds sizes its own way
    return engine.stylize_frame(content, content, clip.video.frame_iterations).tensor


def _next_frame(content: torch.Tensor, engine: Engine, clip: Clip, outputs: dict[int, np.ndarray], frame: Frame) -> torch.Tensor:
    start, target, covered = warm_start(frame, outputs)
    temporal = TemporalTarget(target, covered, clip.video.temporal_weight)
    return engine.stylize_frame(content, start, clip.video.frame_iterations, temporal).tensor


def _independent_frames(clip: Clip, segment: Segment, work: WorkFolder, engine: Engine, progress: _Progress) -> None:
    """The first and only pass of an engine whose frames stand alone: BATCH frames at a time
    through it, measured and scored on one frame in SAMPLE_EVERY and the last, so that checks
    cost little beside the network."""
    before = work.recent_frames(1).get(work.end - 1)  # the output a resumed run's first transition starts from
    started = time.perf_counter()
    frames = prefetch(sampled_frames(clip, segment, work.frames_done, SAMPLE_EVERY))
    with _core_left_for_decoding():
        for batch, last in _batches(frames, BATCH):
            pictures = engine.stylize([frame.pixels for frame in batch])
            for frame, picture in zip(batch, pictures):
                pixels = _pixels_at(picture, clip.size)
                errors = warping_errors(pixels, before, frame) if frame.previous is not None else None
                scored = (frame.index - work.first) % SAMPLE_EVERY == 1 or (last and frame is batch[-1])
                score = score_frame(pixels, frame.pixels, engine.styles, clip.settings).as_list() if scored else None
                work.add(frame.index, frame.cut, pixels, errors, score, time.perf_counter() - started)
                started = time.perf_counter()
                before = pixels
                progress(1, frame.index + 1, clip.info.frame_count_hint, pixels)


@contextlib.contextmanager
def _core_left_for_decoding() -> Iterator[None]:
    """One thread fewer for the network while frames stand alone: the decode thread and the
    frame writer keep about a core busy, and a network whose threads wait on each other at
    every layer for a core they share slows by more than that core gives. Measured on bikes.mp4
    at 320 px on a 2-core CPU beside another process: 19-21 fps end to end on 2 threads, 28-31 on 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - 1))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _pixels_at(result: StylizeResult, size: tuple[int, int]) -> np.ndarray:
    """A result's picture at the clip's working size (the photo path rounds sizes its own way)."""
    if (result.image.height, result.image.width) == tuple(size):
        return np.asarray(result.image)
    return to_pixels(resize(result.tensor, size))


def _batches(items: Iterator, size: int) -> Iterator[tuple[list, bool]]:
    """Lists of up to `size` items, each with whether it is the last."""
    batch, held = [], None
    for item in items:
        batch.append(item)
        if len(batch) == size:
            if held is not None:
                yield held, False
            held, batch = batch, []
    if held is not None:
        yield held, not batch
    if batch:
        yield batch, True


def warm_start(frame: Frame, outputs: dict[int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start, temporal target, where the target holds): the earlier outputs warped into this frame,
    each pixel held to the nearest one where it was reliably visible. Pixels no warp can be trusted
    for start from the previous output warped anyway, not from the photo (measured on real footage:
    later frames closer to a photo-path stylization, flicker down by 40%; README), except those the
    warp reads from beyond the frame's edge, where it has only smears (measured: seams and flicker
    on a pan get worse when those start from the smear)."""
    target = covered = fallback = None
    for reference in frame.references:
        warped = warp(as_tensor(outputs[frame.index - reference.jump]), reference.backward)
        target = reference.mask * warped if target is None else target + reference.mask * warped
        covered = reference.mask if covered is None else covered + reference.mask
        if fallback is None:  # where the warp reads from beyond the frame's edge it has only smears: the photo
            inside = inside_frame(reference.backward)
            fallback = inside * warped + (1 - inside) * as_tensor(frame.pixels)
    return target + (1 - covered) * fallback, target, covered
