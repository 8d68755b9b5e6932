"""What this machine will use: device, library versions, weights file, ffmpeg."""

from __future__ import annotations

import subprocess

import torch

from .device import describe_device, resolve_device
from .weights import resolve_weights


def ffmpeg_executable() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version(executable: str) -> str:
    try:
        first = subprocess.run([executable, "-version"], capture_output=True, text=True, timeout=20).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unusable ({error.__class__.__name__})"
    return first[0] if first else "unknown"


def environment_report(device: str = "auto", weights: str = "caffe") -> dict[str, str]:
    """Ordered facts for `stylize info`; raises the usual errors for a bad device or weights."""
    resolved = resolve_device(device)
    source = resolve_weights(weights)
    ffmpeg = ffmpeg_executable()
    cuda = torch.version.cuda or "none (CPU build)"
    return {
        "device": describe_device(resolved),
        "torch": torch.__version__,
        "cuda": f"{cuda}, available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}",
        "weights": source.name,
        "weights file": source.file,
        "preprocessing": source.preprocessing,
        "ffmpeg": f"{ffmpeg} ({ffmpeg_version(ffmpeg)})",
    }
