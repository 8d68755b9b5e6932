"""The flow-warped frame chain (Ruder et al. 2016): frame 0 of a segment like a photo,
every later frame warm-started from the previous output warped by optical flow and
held to it by a temporal loss where the flow is reliable."""

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
from ..engine.tensors import as_tensor, resize, to_pil
from .clip import Clip, Segment
from .flow import warp
from .frames import Frame, frames_with_flow, jumps, prefetch, warping_errors
from .quality import photo_gaps, score_frame


@dataclass
class VideoProgress:
    frame: int  # 1-based frames finished
    frames_hint: int  # from the container header: an estimate
    elapsed: float
    frames_per_second: float
    resumed_from: int
    image: np.ndarray | None = None  # the frame just stylized, HxWx3 uint8, for a live view

    def portable(self) -> "VideoProgress":
        """A light copy for another process: no frame."""
        return dataclasses.replace(self, image=None)


def stylize_segment(clip: Clip, segment: Segment, callback: Callable[[VideoProgress], None] | None = None) -> int:
    """Stylize the segment's frames into its work folder (resuming where it stopped), then a few
    of them as photos to measure against; returns how many frames there are."""
    work = clip.work(segment)
    if work.complete:
        return work.frames_done
    began = started = time.perf_counter()
    work.begin(str(network_for(clip.settings).device))
    styles = prepare_styles(clip.styles)
    reach = jumps(clip.video)[-1]
    outputs = work.recent_frames(reach)  # what the next frames are held to
    for frame in prefetch(frames_with_flow(clip, segment, work.frames_done)):
        content = as_tensor(frame.pixels)
        if not frame.references or not clip.video.temporal:
            result = _first_frame(content, styles, clip, frame)
        else:
            result = _next_frame(content, styles, clip, outputs, frame)
        pixels = _quantise(result)
        errors = warping_errors(pixels, outputs[frame.index - 1], frame) if frame.previous is not None else None
        score = score_frame(pixels, frame.pixels, styles, clip.settings).as_list()
        work.add(frame.index, frame.cut, pixels, errors, score, time.perf_counter() - started)
        started = time.perf_counter()
        outputs[frame.index] = pixels  # the rounded frame, exactly what a resumed run reloads
        outputs.pop(frame.index - reach, None)
        if callback:
            elapsed = time.perf_counter() - began
            done = work.frames_done - work.resumed_from
            callback(VideoProgress(frame.index + 1, clip.info.frame_count_hint, elapsed, done / max(elapsed, 1e-9), work.resumed_from, pixels))
    work.finish(photo_gaps(clip, segment, work, styles))
    return work.frames_done


def _first_frame(content: torch.Tensor, styles, clip: Clip, frame: Frame) -> torch.Tensor:
    """A new shot or segment: stylized like a photo; independent frames after the first get frame_iterations."""
    if not frame.references:  # the segment's first frame, or a cut
        result = stylize_batch([content], styles, clip.settings)[0].tensor
        return resize(result, tuple(content.shape[-2:]))  # the photo path rounds sizes its own way
    return stylize_frame(content, styles, clip.settings, content, clip.video.frame_iterations).tensor


def _next_frame(content: torch.Tensor, styles, clip: Clip, outputs: dict[int, np.ndarray], frame: Frame) -> torch.Tensor:
    """Warm-started from, and held to, the earlier outputs warped into this frame: each pixel
    to the nearest one where it was reliably visible; elsewhere it starts from the content."""
    target, covered = torch.zeros_like(content), torch.zeros_like(content[:, :1])
    for reference in frame.references:
        warped = warp(as_tensor(outputs[frame.index - reference.jump]), reference.backward)
        target += reference.mask * warped
        covered += reference.mask
    start = target + (1 - covered) * content
    temporal = TemporalTarget(target, covered, clip.video.temporal_weight)
    return stylize_frame(content, styles, clip.settings, start, clip.video.frame_iterations, temporal).tensor


def _quantise(image: torch.Tensor) -> np.ndarray:
    """To 8 bits, as the encoder and the work folder store it."""
    return np.asarray(to_pil(image), dtype=np.uint8)
