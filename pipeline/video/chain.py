"""The flow-warped frame chain (Ruder et al. 2016): frame 0 of a segment like a photo,
every later frame warm-started from the previous output warped by optical flow and
held to it by a temporal loss where the flow is reliable; then any later passes (passes.py),
and the figures that say how the clip holds up (quality.py)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..engine.losses import TemporalTarget
from ..engine.network import network_for
from ..engine.stylize import prepare_styles, stylize_batch, stylize_frame
from ..engine.tensors import as_tensor, resize, to_pixels
from .clip import Clip, Segment
from .flow import inside_frame, warp
from .frames import Frame, frames_with_flow, jumps, prefetch, warping_errors
from .passes import later_passes
from .quality import measure_again, photo_gaps, score_frame
from .work import WorkFolder


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
    """Stylize the segment's frames into its work folder (resuming where it stopped): the
    forward chain, any later passes, then a few frames again as photos to measure against;
    returns how many frames there are."""
    work = clip.work(segment)
    if work.complete:
        return work.frames_done
    work.begin(str(network_for(clip.settings).device))
    styles = prepare_styles(clip.styles)
    progress = _Progress(clip, work, callback)
    if work.passes_done == 0:
        _forward_chain(clip, segment, work, styles, progress)
        work.pass_done(1)
    if clip.video.passes > 1:
        later_passes(clip, work, styles, progress)
        measure_again(clip, segment, work, styles)
    work.finish(photo_gaps(clip, segment, work, styles))
    return work.frames_done


class _Progress:
    """Each finished frame, as a VideoProgress for the callback."""

    def __init__(self, clip: Clip, work: WorkFolder, callback: Callable[[VideoProgress], None] | None):
        self.clip, self.work, self.callback = clip, work, callback
        self.began, self.frames = time.perf_counter(), 0

    def __call__(self, pass_number: int, frame: int, frames_hint: int, pixels: np.ndarray) -> None:
        self.frames += 1
        if self.callback:
            elapsed = time.perf_counter() - self.began
            self.callback(VideoProgress(frame, frames_hint, elapsed, self.frames / max(elapsed, 1e-9), self.work.resumed_from,
                                        pixels, pass_number, self.clip.video.passes))


def _forward_chain(clip: Clip, segment: Segment, work: WorkFolder, styles, progress: _Progress) -> None:
    """The first pass, frame after frame to the segment's end, each scored as it is made."""
    started = time.perf_counter()
    reach = jumps(clip.video)[-1]
    outputs = work.recent_frames(reach)  # what the next frames are held to
    for frame in prefetch(frames_with_flow(clip, segment, work.frames_done)):
        content = as_tensor(frame.pixels)
        if not frame.references or not clip.video.temporal:
            result = _first_frame(content, styles, clip, frame)
        else:
            result = _next_frame(content, styles, clip, outputs, frame)
        pixels = to_pixels(result)
        errors = warping_errors(pixels, outputs[frame.index - 1], frame) if frame.previous is not None else None
        score = score_frame(pixels, frame.pixels, styles, clip.settings).as_list()
        work.add(frame.index, frame.cut, pixels, errors, score, time.perf_counter() - started)
        started = time.perf_counter()
        outputs[frame.index] = pixels  # the rounded frame, exactly what a resumed run reloads
        outputs.pop(frame.index - reach, None)
        progress(1, frame.index + 1, clip.info.frame_count_hint, pixels)


def _first_frame(content: torch.Tensor, styles, clip: Clip, frame: Frame) -> torch.Tensor:
    """A new shot or segment: stylized like a photo; independent frames after the first get frame_iterations."""
    if not frame.references:  # the segment's first frame, or a cut
        result = stylize_batch([content], styles, clip.settings)[0].tensor
        return resize(result, tuple(content.shape[-2:]))  # the photo path rounds sizes its own way
    return stylize_frame(content, styles, clip.settings, content, clip.video.frame_iterations).tensor


def _next_frame(content: torch.Tensor, styles, clip: Clip, outputs: dict[int, np.ndarray], frame: Frame) -> torch.Tensor:
    start, target, covered = warm_start(frame, outputs)
    temporal = TemporalTarget(target, covered, clip.video.temporal_weight)
    return stylize_frame(content, styles, clip.settings, start, clip.video.frame_iterations, temporal).tensor


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
