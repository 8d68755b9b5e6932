"""The one ffmpeg: the executable imageio-ffmpeg ships, how to run it, and how to read its errors."""

from __future__ import annotations

import functools
import re
import subprocess

from ..errors import EnvironmentProblem

_LOG_PREFIX = re.compile(r"^(\[[^\]]* @ 0x[0-9a-f]+\]\s*)+")  # "[libx264 @ 0x55d3...] "


@functools.lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version(executable: str) -> str:
    try:
        first = subprocess.run([executable, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unusable ({error.__class__.__name__})"
    return first[0] if first else "unknown"


def run_ffmpeg(arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    """ffmpeg with `arguments`, output captured; EnvironmentProblem when it cannot be started."""
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", *arguments]
    try:
        return subprocess.run(command, capture_output=True, timeout=timeout)
    except OSError as error:
        raise EnvironmentProblem(f"cannot run ffmpeg ({command[0]}): {error}") from None


def first_error_line(stderr: bytes, fallback: str) -> str:
    """ffmpeg's first error line, without its "[encoder @ 0x...]" prefix: ffmpeg 7+ follows
    the cause with a cascade of "Task finished with error" lines."""
    lines = (_LOG_PREFIX.sub("", line).strip() for line in stderr.decode("utf-8", "replace").splitlines())
    return next((line for line in lines if line), fallback)
