"""What this machine will use: device, library versions, weights file, ffmpeg."""

from __future__ import annotations

import torch

from ..media.ffmpeg import ffmpeg_executable, ffmpeg_version
from ..settings import StyleSettings
from . import memory
from .device import describe_device, network_precision, resolve_device
from .network import network_for
from .weights import resolve_weights


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
    network = network_for(StyleSettings(device=str(device), weights=weights))
    edge = memory.largest_edge(network, budget)
    batch = memory.fitting_batch(network, 512 * 512, budget, limit=1024)
    return f"{edge} x {edge} px in one step, or {batch} photos of 512 x 512 at once ({budget / 2**30:.1f} GiB usable)"
