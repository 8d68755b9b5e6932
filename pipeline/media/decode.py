"""Reading video files: probing (size, frame rate, audio) and decoding frames as
RGB arrays.

OpenCV decodes the frames (its FFmpeg backend, which also reads animated GIFs and
applies rotation metadata); the bundled ffmpeg executable answers what OpenCV
cannot tell: container duration, audio streams, stream end times. Headers are
never trusted for how many frames there are: a file holds what decodes."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from .ffmpeg import run_ffmpeg
from .files import require_file
from .opencv import cv2

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v")

# GIF frame delays this short mean "as fast as possible"; browsers show them at 100 ms.
_GIF_MIN_DELAY_MS = 10
_GIF_DEFAULT_DELAY_MS = 100
_FFMPEG_TIMEOUT_S = 600


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed (after any rotation metadata is applied)
    height: int
    fps: Fraction  # exact rational where possible: 30.02 -> 1501/50, 29.97.. -> 30000/1001
    frame_count_hint: int  # what the header claims; never trusted for reading
    duration: float | None  # container duration in seconds, None if unknown
    has_audio: bool
    audio_codec: str | None  # e.g. "aac"


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate and audio of a video; InputError if it cannot be decoded."""
    path = _existing_file(path)
    capture = _open(path)
    try:
        ok, first = _read(capture)
        if not ok:
            raise InputError("no frames could be decoded (corrupt file or unsupported codec)", path)
        fps = _frame_rate(path, capture)
        hint = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()
    if _is_gif(path):
        hint = len(_gif_delays(path))
    header = _ffmpeg_header(path)
    codec = _audio_codec_in(header)
    height, width = first.shape[:2]
    return VideoInfo(path, width, height, fps, hint, _duration_in(header), codec is not None, codec)


def read_frames(
    path: str | Path, start: float = 0.0, end: float | None = None, max_frames: int | None = None, skip: int = 0
) -> Iterator[np.ndarray]:
    """RGB uint8 HxWx3 frames as displayed, from `start` to `end` seconds (frame
    indices t * fps rounded, end exclusive), at most `max_frames` of them, less the
    first `skip` of those (passed over without converting: a segment of a long clip).

    The file is opened and the selection checked now; frames decode lazily. A
    damaged file yields what decodes before the damage, then stops."""
    path = _existing_file(path)
    if start < 0 or (end is not None and end <= start):
        raise InputError(f"invalid time range start={start} end={end}: need 0 <= start < end")
    if max_frames is not None and max_frames < 0:
        raise InputError(f"max_frames must be 0 or more, got {max_frames}")
    capture = _open(path)
    try:
        fps = _frame_rate(path, capture)
    except BaseException:
        capture.release()
        raise
    first = frame_index(start, fps)
    stop = frame_index(end, fps) if end is not None else None
    if max_frames is not None:
        stop = first + max_frames if stop is None else min(stop, first + max_frames)
    return _decode(capture, path, first, stop, skip)


def audio_codec(path: str | Path) -> str | None:
    """The first audio stream's codec name ("aac", "opus", ...), None without audio.
    Works for audio-only files too, which OpenCV cannot open."""
    return _audio_codec_in(_ffmpeg_header(_existing_file(path)))


def frame_index(seconds: float, fps: Fraction) -> int:
    """The frame shown at `seconds`, rounded half up (not Python's half-to-even
    round, so 0.5 s at 25 fps is frame 13 like 0.3 s is frame 8); the hair of
    tolerance absorbs binary floats such as 0.3 * 25 = 7.4999..."""
    return math.floor(seconds * float(fps) + 0.5 + 1e-9)


def rational_fps(value: float) -> Fraction:
    """The frame rate a float stands for: NTSC rates (N*1000/1001) exactly,
    otherwise the simplest fraction within 1 ppm (30.020013 -> 1501/50, which is
    what ffmpeg displays; 1 ppm drifts less than 4 ms an hour)."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"not a frame rate: {value}")
    ntsc = round(value * 1.001)
    if ntsc > 0 and abs(Fraction(ntsc * 1000, 1001) - Fraction(value)) <= Fraction(value) * Fraction(1, 10**9):
        return Fraction(ntsc * 1000, 1001)
    for denominator in range(1, 1002):
        numerator = round(value * denominator)
        if numerator > 0 and abs(numerator / denominator - value) <= value * 1e-6:
            return Fraction(numerator, denominator)
    return Fraction(value).limit_denominator(1001)


def _decode(capture: cv2.VideoCapture, path: Path, first: int, stop: int | None, skip: int = 0) -> Iterator[np.ndarray]:
    try:
        if stop is not None and stop <= first:
            return
        index = 0
        while index < first and _grab(capture):
            index += 1
        while index < first + skip and (stop is None or index < stop) and _grab(capture):
            index += 1  # frames of the selection before a segment: passed over, never converted
        decoded = index
        while stop is None or index < stop:
            ok, frame = _read(capture)
            if not ok:
                break
            decoded += 1
            index += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # a new contiguous array
        if decoded == 0:
            raise InputError("no frames could be decoded (corrupt file or unsupported codec)", path)
        if index <= first:
            raise InputError(f"start frame {first} is past the end of the video ({decoded} frames)", path)
    finally:
        capture.release()


def _existing_file(path: str | Path) -> Path:
    return require_file(path, "a video file")


def _open(path: Path) -> cv2.VideoCapture:
    # The FFmpeg backend by name: the default backend list would read a "%d" in
    # a file name as an image-sequence pattern.
    capture = cv2.VideoCapture(str(path.resolve()), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise InputError("not a readable video (unsupported format, damaged, or not a video)", path)
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # the default; frames as displayed
    return capture


def _read(capture: cv2.VideoCapture) -> tuple[bool, np.ndarray | None]:
    try:
        return capture.read()
    except cv2.error:  # damage past the first frames: treat as the end of the stream
        return False, None


def _grab(capture: cv2.VideoCapture) -> bool:
    try:
        return capture.grab()
    except cv2.error:
        return False


def _frame_rate(path: Path, capture: cv2.VideoCapture) -> Fraction:
    if _is_gif(path):  # OpenCV reports the first frame's delay, not the average
        delays = _gif_delays(path)
        return Fraction(1000 * len(delays), sum(delays))
    value = capture.get(cv2.CAP_PROP_FPS)
    try:
        return rational_fps(value)
    except ValueError:
        raise InputError(f"frame rate unknown (decoder reports {value})", path) from None


def _is_gif(path: Path) -> bool:
    return path.suffix.lower() == ".gif"


def _gif_delays(path: Path) -> list[int]:
    """Each frame's display time in ms, as browsers show it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            delays = []
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                delay = int(image.info.get("duration") or 0)
                delays.append(delay if delay > _GIF_MIN_DELAY_MS else _GIF_DEFAULT_DELAY_MS)
            return delays
    except (UnidentifiedImageError, OSError, EOFError, ValueError) as error:
        raise InputError(f"not a readable GIF ({error})", path) from None


def _ffmpeg_header(path: Path) -> str:
    # With no output ffmpeg prints the input's description and exits non-zero: expected.
    return run_ffmpeg(["-i", str(path.resolve())], _FFMPEG_TIMEOUT_S).stderr.decode("utf-8", "replace")


def _audio_codec_in(header: str) -> str | None:
    match = re.search(r"Stream #\d+:\d+\S*: Audio: ([A-Za-z0-9_]+)", header)
    return match.group(1) if match else None


def _duration_in(header: str) -> float | None:
    match = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", header)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
