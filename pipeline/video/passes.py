"""Ruder et al.'s multi-pass scheme (`video.passes`): after the forward chain, more passes
over a segment's frames in alternating direction. Each frame restarts from a blend of its
own last result and its neighbour's result of this pass warped into it, and is held to that
neighbour where the flow is reliable; so the quality of well-converged frames spreads both
ways through the clip, and the last frames are no longer only ever warm-started."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from ..engine.losses import TemporalTarget
from ..engine.tensors import as_tensor, to_pixels
from .clip import Clip
from .flow import warp
from .frames import Frame, pass_frames, prefetch
from .work import WorkFolder

NEIGHBOUR_BLEND = 0.5  # Ruder et al.'s delta: the share of a reliable pixel's start taken from the neighbour

# Called after each frame with (pass number, frames of this pass done, frames in the pass, the frame).
PassProgress = Callable[[int, int, int, np.ndarray], None]


def later_passes(clip: Clip, work: WorkFolder, engine, progress: PassProgress) -> None:
    """Passes 2..video.passes over the frames in the work folder, backward first, by a chained
    engine (see `Engine`); resumable (a pass resumes at the frame it reached, with the same
    starts it would have had)."""
    for number in range(work.passes_done + 1, clip.video.passes + 1):
        frames = pass_frames(clip, work.first, work.end, number % 2 == 0, work.pass_frames, work.cuts)
        started = time.perf_counter()
        for frame in prefetch(frames):
            pixels = to_pixels(_refined(frame, clip, work, engine))
            work.replace(frame.index, pixels, time.perf_counter() - started)
            started = time.perf_counter()
            progress(number, work.pass_frames, work.frames_done, pixels)
        work.pass_done(number)


def _refined(frame: Frame, clip: Clip, work: WorkFolder, engine) -> torch.Tensor:
    content, own = as_tensor(frame.pixels), as_tensor(work.frame(frame.index))
    if not frame.references or not clip.video.temporal:  # the pass's first frame, or a new shot
        return engine.stylize_frame(content, own, clip.video.frame_iterations).tensor
    reference = frame.references[0]
    neighbour = work.frame(frame.index - reference.jump, pass_number=work.passes_done + 1)
    warped = warp(as_tensor(neighbour), reference.backward)
    blend = NEIGHBOUR_BLEND * reference.mask
    start = blend * warped + (1 - blend) * own
    temporal = TemporalTarget(warped, reference.mask, clip.video.temporal_weight)
    return engine.stylize_frame(content, start, clip.video.frame_iterations, temporal).tensor
