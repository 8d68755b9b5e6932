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
from .frames import Frame, frames_with_flow, prefetch, warping_errors


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
    """Stylize the segment's frames into its work folder (resuming where it stopped); returns how many there are."""
    work = clip.work(segment)
    if work.complete:
        return work.frames_done
    began = started = time.perf_counter()
    work.begin(str(network_for(clip.settings).device))
    styles = prepare_styles(clip.styles)
    previous = work.last_frame()
    for frame in prefetch(frames_with_flow(clip, segment, work.frames_done)):
        content = as_tensor(frame.pixels)
        if previous is None or frame.cut or not clip.video.temporal:
            result = _first_frame(content, styles, clip, frame, segment)
        else:
            result = _next_frame(content, styles, clip, previous, frame)
        pixels = _quantise(result)
        measurable = previous is not None and frame.backward is not None and not frame.cut
        errors = warping_errors(as_tensor(pixels), previous, content, work.previous_content, frame) if measurable else None
        work.add(frame.index, frame.cut, pixels, content, errors, time.perf_counter() - started)
        started = time.perf_counter()
        previous = as_tensor(pixels)  # the rounded frame, exactly what a resumed run reloads
        if callback:
            elapsed = time.perf_counter() - began
            done = work.frames_done - work.resumed_from
            callback(VideoProgress(frame.index + 1, clip.info.frame_count_hint, elapsed, done / max(elapsed, 1e-9), work.resumed_from, pixels))
    work.finish()
    return work.frames_done


def _first_frame(content: torch.Tensor, styles, clip: Clip, frame: Frame, segment: Segment) -> torch.Tensor:
    """A new shot or segment: stylized like a photo; independent frames after the first get frame_iterations."""
    if frame.index == segment.first or frame.cut:
        result = stylize_batch([content], styles, clip.settings)[0].tensor
        return resize(result, tuple(content.shape[-2:]))  # the photo path rounds sizes its own way
    return stylize_frame(content, styles, clip.settings, content, clip.video.frame_iterations).tensor


def _next_frame(content: torch.Tensor, styles, clip: Clip, previous: torch.Tensor, frame: Frame) -> torch.Tensor:
    warped = warp(previous, frame.backward)
    # Where the warp cannot be trusted (disocclusions, frame edges) start from the content instead.
    start = frame.mask * warped + (1 - frame.mask) * content
    temporal = TemporalTarget(warped, frame.mask, clip.video.temporal_weight)
    return stylize_frame(content, styles, clip.settings, start, clip.video.frame_iterations, temporal).tensor


def _quantise(image: torch.Tensor) -> np.ndarray:
    """To 8 bits, as the encoder and the work folder store it."""
    return np.asarray(to_pil(image), dtype=np.uint8)
