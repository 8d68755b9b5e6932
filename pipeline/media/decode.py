"""Reading video files: probing (size, frame rate, audio, which stream) and decoding frames
as RGB arrays, each with its presentation time.

The main video stream is the one ffmpeg itself picks (the largest picture, a stream
marked default first, never cover art). OpenCV decodes it when it is the file's first
video stream (its FFmpeg backend, which also reads animated GIFs and applies rotation
metadata); OpenCV cannot select another, so the bundled ffmpeg decodes those. ffmpeg also
answers what OpenCV cannot tell: container duration, audio streams. Headers are never
trusted for how many frames there are: a file holds what decodes.

Frames are selected by their timestamps: frame n is the one shown at its presentation
time t_n (seconds from the first frame), which for a constant frame rate is n / fps; a
variable-frame-rate clip keeps its own times (`frame_times`)."""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import EnvironmentProblem, InputError
from .ffmpeg import ffmpeg_executable, run_ffmpeg
from .files import require_file
from .matroska import read_blocks
from .opencv import cv2

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v")

# GIF frame delays this short mean "as fast as possible"; browsers show them at 100 ms.
_GIF_MIN_DELAY_MS = 10
_GIF_DEFAULT_DELAY_MS = 100
_FFMPEG_TIMEOUT_S = 600
# Frames this close to n / fps are on a constant rate's grid: containers that count in
# milliseconds (Matroska, WebM) round 29.97 fps by up to half of one.
ON_GRID_S = 0.001
_END = object()  # the stream has no more frames


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
    stream: int | None = None  # the main video stream's index among all the file's streams (-map 0:N)
    decoder: str = "opencv"  # "opencv" for the file's first video stream; "ffmpeg" for another
    time_base: Fraction | None = None  # the stream's timestamp unit, e.g. 1/15360


@dataclass(frozen=True)
class FrameTimes:
    """When each selected frame is shown: what a variable-frame-rate clip keeps."""

    start: float  # the first selected frame's time, in seconds from the clip's first frame
    times: tuple[float, ...]  # each frame's, in seconds from the first selected one (so times[0] == 0)
    end: float  # when the last one stops showing: where the next frame starts, or the clip ends
    time_base: Fraction | None = None  # the source's timestamp unit, to encode the times exactly

    def constant(self, fps: Fraction) -> bool:
        """Whether every frame is where a constant `fps` puts it (within ON_GRID_S)."""
        period = 1 / float(fps)
        return (all(abs(t - k * period) <= ON_GRID_S for k, t in enumerate(self.times))
                and abs(self.end - len(self.times) * period) <= ON_GRID_S)


def probe_video(path: str | Path) -> VideoInfo:
    """Size, frame rate, audio and main stream of a video; InputError if it cannot be decoded."""
    path = _existing_file(path)
    header = _ffmpeg_header(path, mapping=True)
    stream = _main_stream(header)
    source = _open(path, stream)
    try:
        if source.advance() is _END or (first := source.pixels()) is None:
            raise InputError("no frames could be decoded (corrupt file or unsupported codec)", path)
        fps = _frame_rate(path, source, stream)
        hint = source.count_hint()
    finally:
        source.close()
    if _is_gif(path):
        hint = len(_gif_delays(path))
    duration = _duration_in(header)
    if hint is None:
        hint = round(duration * float(fps)) if duration else 0
    codec = _audio_codec_in(header)
    height, width = first.shape[:2]
    return VideoInfo(path, width, height, fps, hint, duration, codec is not None, codec,
                     stream.index, "opencv" if stream.opencv else "ffmpeg", stream.time_base)


def read_frames(
    path: str | Path, start: float = 0.0, end: float | None = None, max_frames: int | None = None, skip: int = 0,
    info: VideoInfo | None = None,
) -> Iterator[np.ndarray]:
    """RGB uint8 HxWx3 frames of the main video stream as displayed, from `start` to `end`
    seconds (the frames whose timestamps t give t * fps rounded in that range of frame
    indices, end exclusive), at most `max_frames` of them, less the first `skip` of those
    (passed over without converting: a segment of a long clip). `info` (from probe_video)
    saves probing the file again.

    The file is opened and the selection checked now; frames decode lazily. A
    damaged file yields what decodes before the damage, then stops."""
    path = _existing_file(path)
    _check_selection(start, end, max_frames)
    source, fps, _ = _open_main(path, info)
    first, stop = _bounds(start, end, fps)
    return _decode(source, path, fps, first, stop, max_frames, skip)


def frame_times(
    path: str | Path, start: float = 0.0, end: float | None = None, max_frames: int | None = None,
    info: VideoInfo | None = None,
) -> FrameTimes | None:
    """The presentation times of the frames read_frames selects with the same arguments
    (read without converting a frame); None when the stream's timestamps cannot be
    trusted (missing, or not increasing), or nothing is selected."""
    path = _existing_file(path)
    _check_selection(start, end, max_frames)
    source, fps, time_base = _open_main(path, info)
    first, stop = _bounds(start, end, fps)
    try:
        if max_frames == 0 or (stop is not None and stop <= first):
            return None
        selection = _Selection(source, fps, first, stop, max_frames, look_past=True)
        times = [seconds for _, seconds in selection]
    finally:
        source.close()
    if not times or None in times:
        return None
    origin = times[0]
    if selection.after is not None:
        last = selection.after
    elif _is_gif(path):
        last = times[-1] + _gif_delays(path)[-1] / 1000  # a GIF says how long its last frame shows
    elif len(times) > 1:
        last = 2 * times[-1] - times[-2]  # the last frame lasts as long as the one before it
    else:
        last = times[0] + 1 / float(fps)
    return FrameTimes(origin, tuple(t - origin for t in times), last - origin, time_base)


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


class _Selection:
    """Walks the stream, yielding (count, seconds from the clip's first frame) for each
    selected frame while the source sits on it. A frame's index is its timestamp times fps,
    rounded (so n for a constant rate); from where timestamps stop increasing (missing, or
    broken) each frame counts one past the one before and has no time (None)."""

    def __init__(self, source, fps: Fraction, first: int, stop: int | None, limit: int | None, look_past: bool = False):
        self.source, self.fps, self.first, self.stop, self.limit, self.look_past = source, fps, first, stop, limit, look_past
        self.decoded = 0  # frames of the stream walked over
        self.selected = 0
        self.after: float | None = None  # the time of the first frame past the selection, where one was seen
        self._timed = True
        self._index, self._origin, self._previous = -1, None, None

    def __iter__(self) -> Iterator[tuple[int, float | None]]:
        while self.limit is None or self.selected < self.limit:
            seconds = self._next()
            if seconds is _END:
                return
            if self.stop is not None and self._index >= self.stop:
                self.after = seconds
                return
            if self._index >= self.first:
                yield self.selected, seconds
                self.selected += 1
        if self.look_past and (seconds := self._next()) is not _END:
            self.after = seconds

    def _next(self):
        seconds = self.source.advance()
        if seconds is _END:
            return _END
        self.decoded += 1
        if self._timed and seconds is not None and (self._previous is None or seconds > self._previous):
            if self._origin is None:
                self._origin = seconds
            self._index = max(self._index, frame_index(seconds - self._origin, self.fps))
        else:
            self._timed = False
            self._index += 1
        self._previous = seconds
        return seconds - self._origin if self._timed else None


def _decode(source, path: Path, fps: Fraction, first: int, stop: int | None, limit: int | None,
            skip: int = 0) -> Iterator[np.ndarray]:
    try:
        if limit == 0 or (stop is not None and stop <= first):
            return
        selection = _Selection(source, fps, first, stop, limit)
        for count, _ in selection:
            if count < skip:
                continue  # frames of the selection before a segment: passed over, never converted
            pixels = source.pixels()
            if pixels is None:
                break
            yield pixels
        if selection.decoded == 0:
            raise InputError("no frames could be decoded (corrupt file or unsupported codec)", path)
        if selection.selected == 0:
            raise InputError(f"start frame {first} is past the end of the video ({selection.decoded} frames)", path)
    finally:
        source.close()


def _check_selection(start: float, end: float | None, max_frames: int | None) -> None:
    if start < 0 or (end is not None and end <= start):
        raise InputError(f"invalid time range start={start} end={end}: need 0 <= start < end")
    if max_frames is not None and max_frames < 0:
        raise InputError(f"max_frames must be 0 or more, got {max_frames}")


def _bounds(start: float, end: float | None, fps: Fraction) -> tuple[int, int | None]:
    return frame_index(start, fps), (frame_index(end, fps) if end is not None else None)


def _existing_file(path: str | Path) -> Path:
    return require_file(path, "a video file")


# --- which stream ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stream:
    index: int | None  # among all the file's streams; None where ffmpeg listed no video
    opencv: bool  # the file's first video stream: the one OpenCV reads
    fps: Fraction | None  # as ffmpeg prints it (two decimals): for streams OpenCV cannot read
    time_base: Fraction | None


def _main_stream(header: str) -> _Stream:
    """The video stream ffmpeg maps by default (its "Stream mapping" of a run with video
    only); the first one not cover art where no mapping was printed."""
    listing, _, mapping = header.partition("Stream mapping:")
    listing = listing.split("\nOutput #", 1)[0]
    streams = {int(number): line for number, line in re.findall(r"^\s*Stream #0:(\d+)\S*: Video: (.*)$", listing, re.MULTILINE)}
    if not streams:
        return _Stream(None, True, None, None)
    mapped = re.search(r"Stream #0:(\d+)\S* -> #0:0", mapping)
    chosen = int(mapped.group(1)) if mapped and int(mapped.group(1)) in streams else None
    if chosen is None:
        chosen = next((n for n, line in streams.items() if "(attached pic)" not in line), min(streams))
    line = streams[chosen]
    return _Stream(chosen, chosen == min(streams), _printed_rate(line, "fps") or _printed_rate(line, "tbr"),
                   _time_base(line))


def _printed_rate(line: str, unit: str) -> Fraction | None:
    """A rate as ffmpeg prints it ("29.97 fps", "25 tbr", "90k tbn"), NTSC rates snapped
    to N*1000/1001: two decimals cannot say more."""
    match = re.search(rf"(\d+(?:\.\d+)?)(k?) {unit}\b", line)
    if not match:
        return None
    value = float(match.group(1)) * (1000 if match.group(2) else 1)
    if value <= 0:
        return None
    ntsc = round(value * 1.001)
    if "." in match.group(1) and abs(ntsc * 1000 / 1001 - value) < 0.006:
        return Fraction(ntsc * 1000, 1001)
    return rational_fps(value)


def _time_base(line: str) -> Fraction | None:
    ticks = _printed_rate(line, "tbn")
    return 1 / ticks if ticks is not None and ticks.denominator == 1 else None


def _open_main(path: Path, info: VideoInfo | None):
    """The main stream, opened, with its frame rate and time base."""
    if info is not None:
        stream = _Stream(info.stream, info.decoder == "opencv", info.fps, info.time_base)
        return _open(path, stream), info.fps, info.time_base
    stream = _main_stream(_ffmpeg_header(path, mapping=True))
    source = _open(path, stream)
    try:
        return source, _frame_rate(path, source, stream), stream.time_base
    except BaseException:
        source.close()
        raise


def _open(path: Path, stream: _Stream):
    return _OpenCvFrames(path) if stream.opencv or stream.index is None else _FfmpegFrames(path, stream.index)


def _frame_rate(path: Path, source, stream: _Stream) -> Fraction:
    if _is_gif(path):  # OpenCV reports the first frame's delay, not the average
        delays = _gif_delays(path)
        return Fraction(1000 * len(delays), sum(delays))
    if isinstance(source, _FfmpegFrames):
        if stream.fps is None:
            raise InputError("frame rate unknown (ffmpeg prints none for the video stream)", path)
        return stream.fps
    value = source.capture.get(cv2.CAP_PROP_FPS)
    try:
        return rational_fps(value)
    except ValueError:
        raise InputError(f"frame rate unknown (decoder reports {value})", path) from None


# --- decoding ----------------------------------------------------------------------------------


class _OpenCvFrames:
    """The first video stream, decoded by OpenCV."""

    def __init__(self, path: Path):
        # The FFmpeg backend by name: the default backend list would read a "%d" in
        # a file name as an image-sequence pattern.
        self.capture = cv2.VideoCapture(str(path.resolve()), cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            self.capture.release()
            raise InputError("not a readable video (unsupported format, damaged, or not a video)", path)
        self.capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # the default; frames as displayed

    def advance(self):
        """On to the next frame: its presentation time in seconds, or _END."""
        try:
            if not self.capture.grab():
                return _END
        except cv2.error:  # damage past the first frames: treat as the end of the stream
            return _END
        return self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000

    def pixels(self) -> np.ndarray | None:
        try:
            ok, frame = self.capture.retrieve()
        except cv2.error:
            return None
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None  # a new contiguous array

    def count_hint(self) -> int | None:
        return max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)

    def close(self) -> None:
        self.capture.release()


class _FfmpegFrames:
    """Another video stream, decoded by the bundled ffmpeg (rotation applied, converted to
    RGB as OpenCV does) and piped as Matroska, which carries each frame's timestamp."""

    def __init__(self, path: Path, stream: int):
        # Timestamps in the demuxer's time base: ffmpeg's default rounds them to a guessed frame rate.
        self.command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path.resolve()),
                        "-map", f"0:{stream}", "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
                        "-c:v", "rawvideo", "-pix_fmt", "rgb24", "-f", "matroska", "-allow_raw_vfw", "1", "pipe:1"]
        self.process: subprocess.Popen | None = None  # started by the first advance(): a selection never read costs nothing
        self.blocks: Iterator | None = None
        self.block = None

    def advance(self):
        if self.process is None:
            try:
                self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL)
            except OSError as error:
                raise EnvironmentProblem(f"cannot run ffmpeg ({self.command[0]}): {error}") from None
            self.blocks = read_blocks(self.process.stdout)
        self.block = next(self.blocks, None)
        return _END if self.block is None else self.block.seconds

    def pixels(self) -> np.ndarray | None:
        block = self.block
        if block is None or block.width is None or block.height is None or len(block.data) != block.width * block.height * 3:
            return None
        return np.frombuffer(bytearray(block.data), np.uint8).reshape(block.height, block.width, 3)

    def count_hint(self) -> int | None:
        return None  # ffmpeg's header has no frame count: estimated from the duration

    def close(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.stdout.close()
        self.process.wait()


# --- what ffmpeg says about the file -----------------------------------------------------------


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


def _ffmpeg_header(path: Path, mapping: bool = False) -> str:
    """ffmpeg's description of the input; with `mapping`, also which video stream it would
    take (a run that maps video only and stops before its first frame)."""
    arguments = ["-i", str(path.resolve())]
    if mapping:
        arguments += ["-an", "-sn", "-dn", "-t", "0", "-f", "null", "-"]
    # Without an output (or when it fails) ffmpeg still describes the input: expected.
    return run_ffmpeg(arguments, _FFMPEG_TIMEOUT_S).stderr.decode("utf-8", "replace")


def _audio_codec_in(header: str) -> str | None:
    match = re.search(r"Stream #\d+:\d+\S*: Audio: ([A-Za-z0-9_]+)", header)
    return match.group(1) if match else None


def _duration_in(header: str) -> float | None:
    match = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", header)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
