"""A segment's frames as the chain needs them: decoded, resized to the working size, with
the optical flow to their predecessor, where it is reliable, and whether a new shot starts;
produced on a thread beside the optimisation."""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..engine.tensors import as_tensor
from ..media.decode import read_frames
from ..media.opencv import cv2
from .clip import Clip, Segment
from .flow import FlowEstimator, reliability_mask, warp, warping_error

PREFETCH = 4


@dataclass
class Frame:
    index: int
    pixels: np.ndarray  # RGB uint8 at the working size
    backward: torch.Tensor | None = None  # flow to the previous frame
    mask: torch.Tensor | None = None  # where that flow is reliable
    cut: bool = False


def frames_with_flow(clip: Clip, segment: Segment, done: int) -> Iterator[Frame]:
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
            frame = Frame(index, pixels)
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
    residual = (as_tensor(current) - warp(as_tensor(previous), backward)).abs().mean()
    return float(residual) > threshold


def prefetch(iterator: Iterator, depth: int = PREFETCH) -> Iterator:
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


def warping_errors(output, previous_output, content, previous_content, frame: Frame) -> tuple[float, float]:
    """(output, input) warping errors of one transition, with the flow between the content frames."""
    return (
        warping_error(output, previous_output, frame.backward, frame.mask),
        warping_error(content, previous_content, frame.backward, frame.mask),
    )
