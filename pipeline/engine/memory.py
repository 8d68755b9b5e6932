"""How much memory one optimisation step needs, measured on the network itself rather
than guessed, and from it the largest image, tile or batch that fits a device.

The measure: one forward and backward pass at a small calibration size, counting the
bytes autograd keeps for the backward pass. Everything that grows with the image grows
linearly with its pixels, so one measurement scales to any size."""

from __future__ import annotations

import functools
import math

import torch

from ..settings import StyleSettings
from .device import resolve_device
from .network import Network, network_for

CALIBRATION_EDGES = (64, 128)
MIN_TILE_SIZE = 128
# Beyond the kept activations a step holds two activation-sized gradients in flight
# during the backward pass, and per image the pixels, their gradient and L-BFGS's
# history of 50 directions, in fp32.
TRANSIENT_ACTIVATIONS = 2
IMAGE_COPIES = 2 + 2 * 50
# Weights, cuDNN workspaces, the allocator's fragmentation: not proportional to pixels.
FIXED_BYTES = 1 << 30
USABLE_FRACTION = 0.9


@functools.lru_cache(maxsize=8)
def bytes_per_pixel(network: Network) -> float:
    """Bytes one optimisation step needs per pixel of one image, on this network at its precision.
    Measured at two sizes, so whatever does not grow with the image (cast weights) drops out."""
    (small, small_largest), (large, large_largest) = (_kept_bytes(network, edge) for edge in CALIBRATION_EDGES)
    added_pixels = CALIBRATION_EDGES[1] ** 2 - CALIBRATION_EDGES[0] ** 2
    kept = (large - small) / added_pixels
    in_flight = TRANSIENT_ACTIVATIONS * large_largest / CALIBRATION_EDGES[1] ** 2
    return kept + in_flight + IMAGE_COPIES * 3 * 4


def _kept_bytes(network: Network, edge: int) -> tuple[int, int]:
    """Bytes autograd keeps for one step's backward pass at edge x edge, and its largest tensor."""
    kept: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    image = torch.rand(1, 3, edge, edge, device=network.device, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        features = network.features(image)
        loss = sum(feature.float().square().mean() for feature in features.values())
    loss.backward()
    return sum(kept.values()), max(kept.values())


def free_bytes(device: torch.device) -> int | None:
    """What a step may use on `device`: free GPU memory plus what torch holds cached.
    None off CUDA, where tile_size alone bounds memory."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int((free + cached) * USABLE_FRACTION)


def fitting_batch(network: Network, pixels: int, budget: int, limit: int) -> int:
    """Images of `pixels` each that one step can optimise together within `budget` bytes (at least 1)."""
    room = (budget - FIXED_BYTES) / (pixels * bytes_per_pixel(network))
    return max(1, min(limit, int(room)))


def largest_edge(network: Network, budget: int, batch: int = 1) -> int:
    """The longest edge of a square image that fits one step within `budget` bytes (0 if none)."""
    pixels = (budget - FIXED_BYTES) / (batch * bytes_per_pixel(network))
    return int(math.isqrt(int(pixels))) if pixels > 0 else 0


def fitting_tile_size(network: Network, tile_size: int, batch: int) -> int:
    """`tile_size`, lowered to what fits the device's free memory when it would not
    (to MIN_TILE_SIZE at least: below it the out-of-memory fallback takes over)."""
    budget = free_bytes(network.device)
    if budget is None:
        return tile_size
    return max(MIN_TILE_SIZE, min(tile_size, largest_edge(network, budget, batch)))


def photos_per_batch(settings: StyleSettings, height: int, width: int, limit: int) -> int:
    """Photos of this working size that one step can optimise together in free GPU memory
    (1 off CUDA), from the network's measured bytes per pixel."""
    budget = free_bytes(resolve_device(settings.device))
    if budget is None:
        return 1
    pixels = min(height, settings.tile_size) * min(width, settings.tile_size)
    return fitting_batch(network_for(settings), pixels, budget, limit)
