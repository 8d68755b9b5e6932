"""Encoding RGB frames to a video file with the ffmpeg that imageio-ffmpeg ships.

Frames are piped to ffmpeg as raw RGB from a background thread, so `write()`
returns while the caller stylizes the next frame: at a constant frame rate as bare
frames, with their own timestamps (a variable-frame-rate clip) in a Matroska stream.
ffmpeg writes a temporary file beside the output that is renamed into place only
after ffmpeg succeeded: the output path never holds a half-written video."""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import EnvironmentProblem, InputError, StylizeError
from .decode import FrameTimes, audio_codec
from .ffmpeg import ffmpeg_executable, first_error_line, run_ffmpeg
from .files import check_destination, partial_path, publish, require_file
from .matroska import frame_cluster, stream_header

CODECS = ("h264", "h265", "vp9", "prores")

_ENCODERS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "prores": "prores_ks"}
_PIXEL_FORMATS = {"h264": "yuv420p", "h265": "yuv420p", "vp9": "yuv420p", "prores": "yuv422p10le"}
_CODEC_OPTIONS = {
    "h264": ["-preset", "medium"],
    "h265": ["-tag:v", "hvc1", "-x265-params", "log-level=error"],  # hvc1: QuickTime plays it
    "vp9": ["-b:v", "0", "-row-mt", "1"],  # -b:v 0: constant quality
    "prores": ["-profile:v", "3"],  # 3 = ProRes 422 HQ
}
_CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "vp9": (0, 63)}  # ProRes has no CRF
_CONTAINERS = {".mp4": ("h264", "h265", "vp9"), ".mov": ("h264", "h265", "prores"),
               ".mkv": CODECS, ".webm": ("vp9",)}
# Audio codecs each container holds as they are (stream copy); others are re-encoded.
_AUDIO_COPYABLE = {".mp4": ("aac", "mp3", "alac"), ".mov": ("aac", "mp3", "alac"),
                   ".mkv": ("aac", "mp3", "alac", "opus", "vorbis", "flac"), ".webm": ("opus", "vorbis")}
_AUDIO_ENCODE = {".mp4": ["aac", "-b:a", "192k"], ".mov": ["aac", "-b:a", "192k"],
                 ".mkv": ["aac", "-b:a", "192k"], ".webm": ["libopus", "-b:a", "160k"]}
# Convert RGB -> YUV with the BT.709 matrix and tag it so, so players show the
# colours we computed. The tags go on the frames too: ffmpeg 9 ignores the
# -color_primaries/-color_trc options when the frames say "unspecified".
_BT709_FILTER = ("scale=out_color_matrix=bt709:out_range=tv,format={pixel_format},"
                 "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")
_BT709_TAGS = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709"]
_QUEUE_FRAMES = 4  # frames in flight between write() and ffmpeg: small, frames can be large
_STDERR_HEAD = 4000
_MUX_TIMEOUT_S = 3600  # streams are copied (audio at most re-encoded): minutes even for hours of video
_TIME_BASE = Fraction(1, 90000)  # for timestamps of a source whose own unit is unknown: the MPEG clock


@dataclass
class EncodeResult:
    path: Path
    frames: int
    audio_kept: bool


class VideoEncoder:
    """Encode frames to `output` (container from its suffix), optionally with the
    audio of `audio_from` from `audio_start` for `audio_duration` seconds.

    Pass audio_duration = frames / fps so the audio ends with the video: the
    output's duration then equals the video's (no -shortest, which cuts late).

    With `times` (from decode.frame_times) frame k is shown at times.times[k] and the
    last until times.end, as in a variable-frame-rate source; fps is then only what
    the times average. The temporary file is named after `partial_of` (default: the
    output), so that an output written in steps leaves only temporaries that
    files.remove_partials_of(partial_of) finds.

        with VideoEncoder(path, width, height, fps) as encoder:
            for frame in frames:
                encoder.write(frame)
            result = encoder.close()
    """

    def __init__(self, output: Path, width: int, height: int, fps: Fraction, codec: str = "h264", crf: int = 18,
                 audio_from: Path | None = None, audio_start: float = 0.0, audio_duration: float | None = None,
                 times: FrameTimes | None = None, partial_of: Path | None = None):
        self.output = Path(output)
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.frames = 0
        self.times = times
        _check_settings(self.output, width, height, self.fps, codec, crf)
        named_after = Path(partial_of) if partial_of is not None else self.output
        if named_after.suffix.lower() != self.output.suffix.lower():
            raise ValueError(f"{self.output}: temporaries named after {named_after} would have another container")
        audio = _plan_audio(self.output.suffix.lower(), audio_from, audio_start, audio_duration)
        self._audio_wanted = audio is not None
        command = _command(self.output, width, height, self.fps, codec, crf, audio, times)
        self._temporary = partial_path(named_after)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # a file, not a pipe: it can never fill and block ffmpeg
        try:
            self._process = subprocess.Popen([*command, str(self._temporary)], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as error:
            self._discard()
            raise EnvironmentProblem(f"cannot run ffmpeg ({command[0]}): {error}") from None
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._state = "open"
        self._writer = threading.Thread(target=self._feed, name="ffmpeg-writer", daemon=True)
        self._writer.start()

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()
        elif self._state == "open":
            self.close()

    def write(self, frame: np.ndarray) -> None:
        """Queue one RGB uint8 frame of exactly (height, width, 3); blocks only
        while ffmpeg is `_QUEUE_FRAMES` frames behind."""
        if self._state != "open":
            raise StylizeError(f"{self.output}: encoder is already {self._state}")
        if frame.dtype != np.uint8 or frame.shape != (self.height, self.width, 3):
            raise ValueError(f"expected a uint8 frame of shape {(self.height, self.width, 3)}, "
                             f"got {frame.dtype} {frame.shape}")
        if self.times is not None and self.frames >= len(self.times.times):
            raise ValueError(f"{self.output}: frame {self.frames + 1} has no timestamp ({len(self.times.times)} given)")
        self._raise_writer_error()
        self._queue.put(np.array(frame, order="C", copy=True))  # a copy: the caller may reuse its buffer
        self.frames += 1

    def close(self) -> EncodeResult:
        """Finish the file and move it into place; StylizeError if ffmpeg failed."""
        if self._state != "open":
            raise StylizeError(f"{self.output}: encoder is already {self._state}")
        self._queue.put(None)
        self._writer.join()
        returncode = self._process.wait()
        self._state = "closed"
        try:
            if self._error is not None or returncode != 0 or self.frames == 0:
                reason = "no frames were written" if self.frames == 0 else self._failure()
                raise StylizeError(f"{self.output}: encoding failed: {reason}")
            publish(self._temporary, self.output)
        finally:
            self._discard()  # after a success only the stderr file is left to clean up
        kept = self._audio_wanted and audio_codec(self.output) is not None
        return EncodeResult(self.output, self.frames, kept)

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file; the output path is untouched."""
        if self._state != "open":
            return  # closed (its file moved into place or removed) or aborted already
        self._state = "aborted"
        if self._process.poll() is None:
            self._process.kill()  # the writer thread's next write fails; it then drains the queue
        self._queue.put(None)
        self._writer.join()
        self._process.wait()
        self._discard()

    def _feed(self) -> None:
        """Writer thread: queue -> ffmpeg's stdin. After a failure it keeps taking
        frames (dropping them) so write() never blocks on a dead ffmpeg."""
        stdin = self._process.stdin
        if self.times is not None:
            try:
                stdin.write(stream_header(self.width, self.height))
            except Exception as error:
                self._error = error
        count = 0
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    if self.times is None:
                        stdin.write(memoryview(frame).cast("B"))
                    else:
                        stdin.write(self._timed(frame, count))
                except Exception as error:  # BrokenPipeError: ffmpeg exited; surfaced by write()/close()
                    self._error = error
            count += 1
        try:
            stdin.close()
        except Exception as error:
            self._error = self._error or error

    def _timed(self, frame: np.ndarray, index: int) -> bytes:
        """Frame `index` with its timestamp and duration, in microseconds."""
        times = self.times.times
        shown = round(times[index] * 1e6)
        until = round((times[index + 1] if index + 1 < len(times) else self.times.end) * 1e6)
        return frame_cluster(frame.tobytes(), shown, until - shown)

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            if self._process.poll() is None:
                self._process.kill()  # the pipe broke some other way: don't wait on a live ffmpeg
            reason = self._failure()
            self.abort()
            raise StylizeError(f"{self.output}: encoding failed: {reason}")

    def _failure(self) -> str:
        """ffmpeg's first error line (-loglevel error keeps warnings out)."""
        self._process.wait()
        self._stderr.seek(0)
        fallback = f"ffmpeg exited with status {self._process.returncode}" if self._process.returncode else str(self._error)
        return first_error_line(self._stderr.read(_STDERR_HEAD), fallback)

    def _discard(self) -> None:
        self._temporary.unlink(missing_ok=True)
        self._stderr.close()


def mux_audio(video: Path, audio_from: Path | None, output: Path, audio_start: float = 0.0,
              audio_duration: float | None = None) -> bool:
    """Write `output`: the video stream of `video` (copied, not re-encoded) with the
    audio of `audio_from` from `audio_start` for `audio_duration` seconds.

    For a video encoded first and given its sound after (the frames took hours;
    the sound is added in a second). `video` is consumed: renamed to `output` when
    there is no audio to add, deleted after a successful mux. Returns whether the
    output has audio."""
    video, output = Path(video), Path(output)
    require_file(video, "a video file")
    audio = _plan_audio(output.suffix.lower(), audio_from, audio_start, audio_duration)
    output.parent.mkdir(parents=True, exist_ok=True)
    if audio is None:
        os.replace(video, output)
        return False
    temporary = partial_path(output)
    arguments = ["-loglevel", "error", "-y", "-i", str(video.resolve()), *_audio_input(audio), "-map", "0:v:0",
                 "-map", "1:a:0?", "-c:v", "copy", "-c:a", *audio.codec, *_container_options(output), str(temporary)]
    try:
        try:
            result = run_ffmpeg(arguments, _MUX_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise StylizeError(f"{output}: adding the audio took over {_MUX_TIMEOUT_S} s; ffmpeg was stopped") from None
        if result.returncode != 0:
            reason = first_error_line(result.stderr, f"ffmpeg exited with status {result.returncode}")
            raise StylizeError(f"{output}: adding the audio failed: {reason}")
        publish(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    video.unlink()
    return audio_codec(output) is not None


@dataclass(frozen=True)
class _Audio:
    source: Path
    start: float
    duration: float | None
    codec: list[str]  # the -c:a arguments


def check_video_output(output: Path, codec: str, crf: int) -> None:
    """The container, codec and quality agree, the bundled ffmpeg has the encoder, and the
    destination can be written: all checked before a single frame is stylized."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in _CONTAINERS:
        raise InputError(f"unsupported video format {suffix or '(no suffix)'}; use one of {', '.join(_CONTAINERS)}",
                         output)
    if codec not in CODECS:
        raise InputError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}", output)
    if codec not in _CONTAINERS[suffix]:
        fits = ", ".join(s for s, codecs in _CONTAINERS.items() if codec in codecs)
        raise InputError(f"{suffix} cannot hold {codec} video; use {fits}", output)
    if codec in _CRF_RANGE and not _CRF_RANGE[codec][0] <= crf <= _CRF_RANGE[codec][1]:
        raise InputError(f"crf {crf} is out of range for {codec} ({_CRF_RANGE[codec][0]}-{_CRF_RANGE[codec][1]})",
                         output)
    check_destination(output)
    _require_encoder(_ENCODERS[codec], codec)


def _check_settings(output: Path, width: int, height: int, fps: Fraction, codec: str, crf: int) -> None:
    check_video_output(output, codec, crf)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise InputError(f"frame size {width}x{height} must be positive and even (4:2:0/4:2:2 video "
                         f"halves the colour resolution); resize or crop by a pixel", output)
    if fps <= 0:
        raise InputError(f"frame rate must be positive, got {fps}", output)


def _plan_audio(suffix: str, source: Path | None, start: float, duration: float | None) -> _Audio | None:
    """Which audio to take and whether it can be copied, decided before the first
    frame: a copy the container rejects would only fail after the whole encode."""
    if source is None:
        return None
    if start < 0 or (duration is not None and duration <= 0):
        raise InputError(f"invalid audio range start={start} duration={duration}", source)
    codec = audio_codec(source)
    if codec is None:
        return None
    # Copying cuts only at packet boundaries (~21 ms for AAC): fine at the end,
    # but a late start would shift the sound against the picture, so re-encode then.
    copy = codec in _AUDIO_COPYABLE[suffix] and start == 0
    if not copy:
        _require_encoder(_AUDIO_ENCODE[suffix][0], _AUDIO_ENCODE[suffix][0])
    seconds = None if duration is None else float(duration)  # floats: Fraction has no format spec before 3.12
    return _Audio(Path(source), float(start), seconds, ["copy"] if copy else _AUDIO_ENCODE[suffix])


def _audio_input(audio: _Audio) -> list[str]:
    """Input options: seeking on the input is sample-accurate when re-encoding."""
    command = ["-ss", f"{audio.start:.6f}"] if audio.start > 0 else []
    if audio.duration is not None:
        command += ["-t", f"{audio.duration:.6f}"]
    return [*command, "-i", str(audio.source.resolve())]


def _command(output: Path, width: int, height: int, fps: Fraction, codec: str, crf: int,
             audio: _Audio | None, times: FrameTimes | None = None) -> list[str]:
    """The ffmpeg command line, less the output file."""
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if times is None:
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                    "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "-"]
    else:
        command += ["-f", "matroska", "-i", "-"]
    if audio is not None:
        command += _audio_input(audio)
    command += ["-map", "0:v:0"]
    if audio is not None:
        command += ["-map", "1:a:0?", "-c:a", *audio.codec]
    if times is not None:
        # Each frame at its own time, counted in the source's unit: ffmpeg's default time base
        # follows a guessed frame rate and would round the times to it.
        base = times.time_base or _TIME_BASE
        command += ["-fps_mode", "passthrough", "-enc_time_base:v", f"{base.numerator}/{base.denominator}"]
    command += ["-c:v", _ENCODERS[codec]]
    if codec in _CRF_RANGE:
        command += ["-crf", str(crf)]
    pixel_format = _PIXEL_FORMATS[codec]
    command += [*_CODEC_OPTIONS[codec], "-pix_fmt", pixel_format,
                "-vf", _BT709_FILTER.format(pixel_format=pixel_format), *_BT709_TAGS]
    return command + _container_options(output)


def _container_options(output: Path) -> list[str]:
    if output.suffix.lower() in (".mp4", ".mov"):
        return ["-movflags", "+faststart"]  # index first: players start before the download ends
    return []


@functools.lru_cache(maxsize=1)
def available_encoders() -> frozenset[str]:
    """Encoder names the bundled ffmpeg was built with."""
    try:
        result = run_ffmpeg(["-encoders"], timeout=60)
    except (EnvironmentProblem, subprocess.SubprocessError) as error:
        raise EnvironmentProblem(f"cannot run ffmpeg to list its encoders: {error}") from None
    names = set()
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split()  # " V....D libx264   libx264 H.264 ..."
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS" and parts[1] != "=":
            names.add(parts[1])
    return frozenset(names)


def _require_encoder(encoder: str, wanted: str) -> None:
    if encoder not in available_encoders():
        raise EnvironmentProblem(f"the bundled ffmpeg has no {encoder} encoder, needed for {wanted}; "
                                 f"choose another codec or install an imageio-ffmpeg build with it")
