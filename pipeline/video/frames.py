"""A segment's frames as the chain needs them: decoded, resized to the working size, with
optical flow to the earlier frames it is held to (the last one, and with long-term
consistency several more), where each is reliable, whether a new shot starts, and a second,
independent flow to measure flicker honestly; produced on a thread beside the optimisation."""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.tensors import as_tensor
from ..media.decode import read_frames
from ..media.images import fit_long_edge
from ..media.opencv import cv2
from ..settings import VideoSettings
from .clip import Clip, Segment
from .flow import CheckFlow, FlowEstimator, reliability_mask, warp, warping_error

PREFETCH = 4
PASS_CHUNK = 32  # frames a later pass decodes at once (a backward pass reads the file chunk by chunk from the end)
# Flow is estimated on frames at least this large (the source's size at most) and scaled down:
# measured on bikes.mp4 at 160 px, flow from 512 px lines the input up better than flow
# estimated at 160 px, and an output held to it agrees with independent estimators.
FLOW_MIN_EDGE = 512


@dataclass
class Reference:
    """An earlier frame this one is held to: flow to it and where it is the nearest reliable one."""

    jump: int
    backward: torch.Tensor  # [1, 2, H, W] flow at the working size
    mask: torch.Tensor  # [1, 1, H, W]: 1 where this reference counts


@dataclass
class Frame:
    index: int
    pixels: np.ndarray  # RGB uint8 at the working size
    previous: np.ndarray | None = None  # the frame before, when it is in the same shot and segment
    references: list[Reference] = field(default_factory=list)  # nearest first; jump 1 leads
    check: tuple[torch.Tensor, torch.Tensor] | None = None  # independent (backward flow, mask) to `previous`
    cut: bool = False

    @property
    def backward(self) -> torch.Tensor | None:
        return self.references[0].backward if self.references else None

    @property
    def mask(self) -> torch.Tensor | None:
        return self.references[0].mask if self.references else None


class _Decoded:
    """One decoded frame at the working size and at the flow size."""

    def __init__(self, pixels: np.ndarray, size: tuple[int, int], flow_size: tuple[int, int]):
        self.pixels = _resized(pixels, size)
        self.fine = self.pixels if flow_size == size else _resized(pixels, flow_size)


def frames_with_flow(clip: Clip, segment: Segment, done: int, long_term: bool = True) -> Iterator[Frame]:
    """The segment's decoded, resized frames with flow to the frames they are held to (frames
    already done before a restart are decoded again only as far back as those reach); without
    `long_term`, to the last frame only, which is all that measuring them needs."""
    video, size = clip.video, clip.size
    flows = _Flows(size, _flow_size(clip), jumps(video) if long_term else [1])
    resume_at = segment.first + done
    skip = max(segment.first, resume_at - flows.jumps[-1])
    count = None if segment.stop is None else segment.stop - skip
    if count is not None and count <= 0:
        return
    frames = read_frames(clip.source, start=video.start, end=video.end, max_frames=video.max_frames, skip=skip, info=clip.info)
    history: collections.deque[tuple[int, _Decoded]] = collections.deque(maxlen=flows.jumps[-1])
    shot_start = skip
    for index, pixels in enumerate(itertools.islice(frames, count), start=skip):
        decoded = _Decoded(pixels, size, flows.flow_size)
        previous = history[-1][1] if history else None
        frame = Frame(index, decoded.pixels)
        if previous is not None:
            # Frames done before a restart only need the last frame's flow, to find cuts again.
            frame.references = flows.references(decoded, history, shot_start, index, longest=None if index >= resume_at else 1)
            frame.cut = _is_cut(decoded.pixels, previous.pixels, frame.backward, video.scene_cut)
            if frame.cut:
                shot_start, frame.references = index, []
            else:
                frame.previous = previous.pixels
        if index >= resume_at:
            if frame.previous is not None:
                frame.check = flows.check(decoded, previous)
            yield frame
        history.append((index, decoded))


def sampled_frames(clip: Clip, segment: Segment, done: int, every: int) -> Iterator[Frame]:
    """The segment's decoded, resized frames from its `done`-th on, for an engine whose frames
    stand alone: flow only on one transition in `every` (into the second frame of each run of
    `every` from the segment's first), the chain's and the independent check's, to measure
    flicker there and to find a cut there; none elsewhere."""
    resume_at = segment.first + done
    skip = max(segment.first, resume_at - 1)  # the frame before the first to do, should its transition be measured
    count = None if segment.stop is None else segment.stop - skip
    if count is not None and count <= 0:
        return
    video = clip.video
    flows = _Flows(clip.size, _flow_size(clip), [1])
    frames = read_frames(clip.source, start=video.start, end=video.end, max_frames=video.max_frames, skip=skip, info=clip.info)
    previous = None
    for index, pixels in enumerate(itertools.islice(frames, count), start=skip):
        if previous is not None and (index - segment.first) % every == 1:
            frame = _measured_transition(index, _Decoded(pixels, clip.size, flows.flow_size),
                                         _Decoded(previous, clip.size, flows.flow_size), flows, video.scene_cut)
        else:
            frame = Frame(index, _resized(pixels, clip.size))
        if index >= resume_at:
            yield frame
        previous = pixels


def _measured_transition(index: int, current: _Decoded, before: _Decoded, flows: "_Flows", scene_cut: float) -> Frame:
    frame = Frame(index, current.pixels, references=[flows.reference(current, before, 1)])
    frame.cut = _is_cut(current.pixels, before.pixels, frame.backward, scene_cut)
    if frame.cut:
        frame.references = []
    else:
        frame.previous, frame.check = before.pixels, flows.check(current, before)
    return frame


class _Flows:
    """The chain's flow (DIS at the flow size, scaled to the working size) and the independent check."""

    def __init__(self, size: tuple[int, int], flow_size: tuple[int, int], jumps: list[int]):
        self.size, self.flow_size, self.jumps = size, flow_size, jumps
        self.estimate = FlowEstimator()
        self.independent = CheckFlow()

    def references(self, current: _Decoded, history, shot_start: int, index: int, longest: int | None = None) -> list[Reference]:
        """Each jump back within the shot (up to `longest`); a pixel counts only against the nearest
        reference where it is reliable (Ruder et al.'s long-term weights, for 0/1 masks)."""
        by_index = dict(history)
        references, covered = [], None
        for jump in self.jumps:
            if (longest is not None and jump > longest) or index - jump < shot_start or index - jump not in by_index:
                break
            reference = self.reference(current, by_index[index - jump], jump)
            mask = reference.mask
            reference.mask = mask if covered is None else mask * (1 - covered)
            covered = mask if covered is None else torch.maximum(covered, mask)
            references.append(reference)
        return references

    def reference(self, current: _Decoded, other: _Decoded, jump: int) -> Reference:
        """Flow from `current` to the frame `jump` before it (after it, for a negative jump), reliable where 1."""
        backward = scale_flow(self.estimate(current.fine, other.fine), self.size)
        return Reference(jump, backward, reliability_mask(backward, scale_flow(self.estimate(other.fine, current.fine), self.size)))

    def check(self, current: _Decoded, previous: _Decoded) -> tuple[torch.Tensor, torch.Tensor]:
        backward = self.independent(current.pixels, previous.pixels)
        return backward, reliability_mask(backward, self.independent(previous.pixels, current.pixels))


def jumps(video: VideoSettings) -> list[int]:
    """How many frames back each frame is held: the last one, and the long-term jumps."""
    return sorted({1, *video.long_term}) if video.temporal else [1]


def scale_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A flow field resampled to (height, width), its vectors scaled with it."""
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    scaled = F.interpolate(flow, size=size, mode="area" if height >= size[0] else "bilinear")
    return scaled * torch.tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)


def _flow_size(clip: Clip) -> tuple[int, int]:
    height, width = clip.size
    long_edge = min(max(clip.info.height, clip.info.width), max(height, width, FLOW_MIN_EDGE))
    if long_edge <= max(height, width):
        return clip.size
    return fit_long_edge(clip.info.height, clip.info.width, long_edge)


def pass_frames(clip: Clip, first: int, end: int, backward: bool, done: int, cuts: list[int]) -> Iterator[Frame]:
    """Frames [first, end) in the order of a later pass (last to first when `backward`) from
    its `done`-th on, each with flow to the frame just before it in that order (jump -1 when
    backward) unless a cut lies between; decoded a chunk at a time, so a backward pass holds few."""
    order = list(range(end - 1, first - 1, -1)) if backward else list(range(first, end))
    step, shots_start = (-1 if backward else 1), set(cuts)
    flows = _Flows(clip.size, _flow_size(clip), [1])
    for at in range(done, len(order), PASS_CHUNK):
        chunk = order[at:at + PASS_CHUNK]
        wanted = sorted(chunk + order[at - 1:at])  # and the frame before the chunk, in pass order
        decoded = {index: _Decoded(pixels, clip.size, flows.flow_size) for index, pixels in zip(wanted, _decode(clip, wanted))}
        for index in chunk:
            frame, neighbour = Frame(index, decoded[index].pixels), index - step
            if neighbour in decoded and max(index, neighbour) not in shots_start:
                frame.references = [flows.reference(decoded[index], decoded[neighbour], step)]
            yield frame


def decode_frames(clip: Clip, indexes: list[int]) -> list[np.ndarray]:
    """These frames (sorted indexes) at the working size, in one pass."""
    return [_resized(pixels, clip.size) for pixels in _decode(clip, indexes)]


def _decode(clip: Clip, indexes: list[int]) -> Iterator[np.ndarray]:
    """These frames (sorted indexes) as decoded, in one pass over the file."""
    wanted = set(indexes)
    frames = read_frames(clip.source, start=clip.video.start, end=clip.video.end, max_frames=clip.video.max_frames,
                         skip=indexes[0], info=clip.info)
    return (pixels for index, pixels in zip(range(indexes[0], indexes[-1] + 1), frames) if index in wanted)


def _resized(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_AREA))


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


def warping_errors(output: np.ndarray, previous_output: np.ndarray, frame: Frame) -> list[float]:
    """Output and input warping errors of one transition: along the chain's flow, then along
    the independent check flow: [output, input, output (check), input (check)]."""
    current, before = as_tensor(output), as_tensor(previous_output)
    content, content_before = as_tensor(frame.pixels), as_tensor(frame.previous)
    errors = [warping_error(current, before, frame.backward, frame.mask), warping_error(content, content_before, frame.backward, frame.mask)]
    if frame.check is not None:
        backward, mask = frame.check
        errors += [warping_error(current, before, backward, mask), warping_error(content, content_before, backward, mask)]
    return errors
