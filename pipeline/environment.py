"""What this machine will use: device, library versions, weights file, ffmpeg."""

from __future__ import annotations

import subprocess

import torch

from . import memory
from .device import describe_device, network_precision, resolve_device
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
    facts = {
        "device": describe_device(resolved),
        "torch": torch.__version__,
        "cuda": f"{cuda}, available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}",
        "weights": source.name,
        "weights file": source.file,
        "preprocessing": source.preprocessing,
        "ffmpeg": f"{ffmpeg} ({ffmpeg_version(ffmpeg)})",
        "network": f"{network_precision(resolved, 'auto')} (precision auto)",
    }
    budget = memory.free_bytes(resolved)
    if budget is not None:
        facts["fits"] = _fits(resolved, weights, budget)
    return facts


def _fits(device: torch.device, weights: str, budget: int) -> str:
    """The largest image one step holds in the free GPU memory, and photos per batch at 512 px."""
    from .settings import StyleSettings
    from .stylize import get_stylizer

    stylizer = get_stylizer(StyleSettings(device=str(device), weights=weights))
    edge = memory.largest_edge(stylizer, budget)
    batch = memory.fitting_batch(stylizer, 512 * 512, budget, limit=1024)
    return f"{edge} x {edge} px in one step, or {batch} photos of 512 x 512 at once ({budget / 2**30:.1f} GiB usable)"
