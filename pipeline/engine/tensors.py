"""Images as tensors: every accepted image form to [1, 3, H, W] in [0, 1], back to PIL, and resizing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..media.images import fit_long_edge, load_image

ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


def as_tensor(image: ImageLike) -> torch.Tensor:
    """Any accepted image form -> float tensor [1, 3, H, W] in [0, 1] on the CPU."""
    if isinstance(image, (str, Path)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    tensor = image.detach().float().cpu()
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4 or tensor.shape[1] != 3:
        raise InputError(f"expected an RGB image, got a tensor of shape {tuple(tensor.shape)}")
    return tensor.clamp(0, 1).contiguous()


def to_pil(tensor: torch.Tensor) -> Image.Image:
    array = tensor.detach().float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray((array * 255.0 + 0.5).astype(np.uint8))


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """HxWx3 uint8, rounded as an 8-bit file stores it."""
    return np.asarray(to_pil(tensor), dtype=np.uint8)


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    shrinking = size[0] < tensor.shape[-2]
    # Antialiasing only matters when shrinking; bicubic can overshoot, hence the clamp.
    return F.interpolate(tensor, size=size, mode="bicubic", align_corners=False, antialias=shrinking).clamp(0, 1)


def resize_long_edge(tensor: torch.Tensor, long_edge: int) -> torch.Tensor:
    return resize(tensor, fit_long_edge(tensor.shape[-2], tensor.shape[-1], long_edge))
