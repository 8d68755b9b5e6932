"""Tiny synthetic clips for the video tests, written with the bundled ffmpeg."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import re

import cv2
import imageio_ffmpeg
import numpy as np
from PIL import Image

from pipeline.errors import InputError
from pipeline.media.ffmpeg import run_ffmpeg
from pipeline.media.files import require_file

REPO = Path(__file__).resolve().parents[1]
ODD_FPS = Fraction(1501, 50)  # 30.02, like the bundled clip


def pan_frames(count: int, shift: int = 2, size=(64, 48), photo: str = "astronaut") -> list[np.ndarray]:
    """A camera panning right across a photo: frame t+1(x) = frame t(x + shift)."""
    width, height = size
    scene = np.asarray(Image.open(REPO / f"samples/photos/{photo}.jpg").convert("RGB").resize((width + shift * count + 8, height + 8)))
    return [np.ascontiguousarray(scene[4 : 4 + height, 4 + i * shift : 4 + i * shift + width]) for i in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: Fraction = ODD_FPS, audio: bool = True, faststart: bool = False) -> Path:
    height, width = frames[0].shape[:2]
    duration = len(frames) / fps
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "-"]
    if audio:
        command += ["-f", "lavfi", "-t", f"{float(duration):.6f}", "-i", "sine=frequency=440:sample_rate=44100"]
    command += ["-map", "0:v:0"] + (["-map", "1:a:0", "-c:a", "aac"] if audio else [])
    command += ["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p"] + (["-movflags", "+faststart"] if faststart else []) + [str(path)]
    subprocess.run(command, input=b"".join(f.tobytes() for f in frames), check=True)
    return path


def write_vfr_clip(path: Path, frames: list[np.ndarray], slots: list[int], fps: Fraction = Fraction(20),
                   audio: bool = True) -> Path:
    """A variable-frame-rate clip, as a camera that drops frames makes one: frames[k] is shown at
    slots[k] / fps (the frames between are dropped by ffmpeg's select filter, timestamps kept), the
    last for 1 / fps; with audio as long. No B-frames, so each packet's duration is its own."""
    height, width = frames[0].shape[:2]
    base = [frames[max(k for k, slot in enumerate(slots) if slot <= n)] for n in range(slots[-1] + 1)]
    kept = "+".join(f"eq(n\\,{slot})" for slot in slots)
    seconds = (slots[-1] + 1) / fps
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "-"]
    if audio:
        command += ["-f", "lavfi", "-t", f"{float(seconds):.6f}", "-i", "sine=frequency=440:sample_rate=44100"]
    command += ["-map", "0:v:0"] + (["-map", "1:a:0", "-c:a", "aac"] if audio else [])
    command += ["-vf", f"select={kept}", "-fps_mode", "passthrough", "-c:v", "libx264", "-bf", "0", "-crf", "12",
                "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, input=b"".join(f.tobytes() for f in base), check=True)
    return path


def write_two_video_streams(path: Path, side: list[np.ndarray], main: list[np.ndarray], fps: Fraction = Fraction(25)) -> Path:
    """A clip whose first video stream is a small side stream and whose second, larger one,
    marked default, is the one ffmpeg plays; with audio as long as the main stream."""
    inputs = []
    for frames in (side, main):
        height, width = frames[0].shape[:2]
        raw = path.with_name(f"{path.stem}.{width}x{height}.rgb")
        raw.write_bytes(b"".join(f.tobytes() for f in frames))
        inputs += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                   "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", str(raw)]
    seconds = len(main) / fps
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *inputs,
               "-f", "lavfi", "-t", f"{float(seconds):.6f}", "-i", "sine=frequency=440:sample_rate=44100",
               "-map", "0:v:0", "-map", "1:v:0", "-map", "2:a:0", "-c:a", "aac", "-c:v", "libx264", "-crf", "12",
               "-pix_fmt", "yuv420p", "-disposition:v:0", "0", "-disposition:v:1", "default", str(path)]
    try:
        subprocess.run(command, check=True)
    finally:
        for raw in path.parent.glob(f"{path.stem}.*.rgb"):
            raw.unlink()
    return path


def frame_times_of(path, stream: str = "0:v:0") -> tuple[list[float], float]:
    """One stream's presentation times (seconds from its first) as ffmpeg reads its packets,
    and where the stream ends (the last frame's time plus its duration). Not from decoding:
    ffmpeg's decoded timing follows a guessed frame rate on a variable-rate stream."""
    arguments = ["-loglevel", "error", "-i", str(Path(path).resolve()), "-map", stream, "-c", "copy", "-f", "framecrc", "-"]
    text = run_ffmpeg(arguments, timeout=600).stdout.decode("utf-8", "replace")
    base = re.search(r"^#tb \d+: (\d+)/(\d+)", text, re.MULTILINE)
    if base is None:
        raise InputError(f"ffmpeg read no packets of stream {stream}", path)
    unit = Fraction(int(base.group(1)), int(base.group(2)))
    packets = sorted(tuple(int(v) for v in line.split(",")[2:4]) for line in text.splitlines() if line and not line.startswith("#"))
    origin = packets[0][0]
    return [float((pts - origin) * unit) for pts, _ in packets], float((max(p + d for p, d in packets) - origin) * unit)


def write_gif(path: Path, frames: list[np.ndarray], milliseconds: int = 100) -> Path:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0)
    return path


def frame_count(path) -> int:
    """How many frames actually decode (a header's count can be wrong)."""
    path = require_file(path, "a video file")
    capture = cv2.VideoCapture(str(path.resolve()), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise InputError("not a readable video", path)
        count = 0
        while _grab(capture):
            count += 1
        return count
    finally:
        capture.release()


def stream_durations(path, video: str = "0:v:0") -> tuple[float | None, float | None]:
    """(video, audio) durations in seconds, each None when the stream is absent. Both
    streams are decoded: with B-frames the last packet is not the last frame shown, and
    audio priming and padding only disappear after decoding."""
    path = require_file(path, "a video file")
    durations = _end_time(path, video), _end_time(path, "0:a:0")
    if durations == (None, None):
        raise InputError("no video or audio stream could be decoded", path)
    return durations


def _grab(capture) -> bool:
    try:
        return capture.grab()
    except cv2.error:  # damage: the end of what decodes
        return False


def _end_time(path: Path, stream: str) -> float | None:
    """Where one stream ends, from ffmpeg's progress report (microseconds)."""
    arguments = ["-loglevel", "error", "-i", str(path.resolve()), "-map", stream, "-progress", "pipe:1", "-nostats", "-f", "null", "-"]
    result = run_ffmpeg(arguments, timeout=600)
    times = re.findall(r"^out_time_us=(\d+)\s*$", result.stdout.decode("utf-8", "replace"), re.MULTILINE)
    if result.returncode != 0 or not times:
        return None
    return int(times[-1]) / 1e6
