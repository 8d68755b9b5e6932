"""Optical flow between content frames, warping, and where a warp can be trusted.

Conventions: a flow field is a tensor [1, 2, H, W] of (dx, dy) in pixels. `backward`
flow maps each pixel of the current frame to where it was in the previous frame,
so warp(previous, backward) lines the previous frame up with the current one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..media.opencv import cv2

# Ruder et al. 2016, consistency and motion-boundary tests.
OCCLUSION_RELATIVE, OCCLUSION_ABSOLUTE = 0.01, 0.5
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002


class FlowEstimator:
    """OpenCV's DIS optical flow on grey frames: fast on the CPU, good on real footage."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self._dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, source: np.ndarray, target: np.ndarray) -> torch.Tensor:
        """Flow f with source(x) ~ target(x + f(x)); frames are RGB uint8 HxWx3."""
        flow = self._dis.calc(_grey(source), _grey(target), None)
        return torch.from_numpy(flow).permute(2, 0, 1).unsqueeze(0).contiguous()


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _displaced(flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute (x, y) pixel positions x + flow(x), each [H, W]."""
    _, _, height, width = flow.shape
    rows = torch.arange(height, dtype=flow.dtype, device=flow.device)
    columns = torch.arange(width, dtype=flow.dtype, device=flow.device)
    ys, xs = torch.meshgrid(rows, columns, indexing="ij")
    return xs + flow[0, 0], ys + flow[0, 1]


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample `image` at x + flow(x) (bilinear; edges repeat beyond the frame)."""
    flow = flow.to(image.device, torch.float32)
    _, _, height, width = flow.shape
    x, y = _displaced(flow)
    grid = torch.stack([x * 2 / max(width - 1, 1) - 1, y * 2 / max(height - 1, 1) - 1], dim=-1)
    return F.grid_sample(image, grid[None].expand(image.shape[0], -1, -1, -1), mode="bilinear", padding_mode="border", align_corners=True)


def inside_frame(flow: torch.Tensor) -> torch.Tensor:
    """[1, 1, H, W]: 1 where x + flow(x) lands inside the frame."""
    _, _, height, width = flow.shape
    x, y = _displaced(flow)
    return ((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)).to(flow.dtype)[None, None]


def reliability_mask(backward: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """[1, 1, H, W]: 1 where the backward flow passes the forward-backward consistency
    test, is not on a motion boundary, and stays inside the frame; 0 elsewhere."""
    forward_there = warp(forward, backward)
    round_trip = (backward + forward_there).pow(2).sum(dim=1)
    magnitudes = backward.pow(2).sum(dim=1) + forward_there.pow(2).sum(dim=1)
    occluded = round_trip > OCCLUSION_RELATIVE * magnitudes + OCCLUSION_ABSOLUTE
    dy, dx = torch.gradient(backward[0], dim=(1, 2))
    gradient = (dx.pow(2) + dy.pow(2)).sum(dim=0, keepdim=True)
    boundary = gradient > BOUNDARY_RELATIVE * backward.pow(2).sum(dim=1) + BOUNDARY_ABSOLUTE
    reliable = ~(occluded | boundary)
    return reliable.to(backward.dtype)[:, None] * inside_frame(backward)


def warping_error(current: torch.Tensor, previous: torch.Tensor, backward: torch.Tensor, mask: torch.Tensor) -> float:
    """Lai et al. 2018: mean squared error in [0, 1] RGB between a frame and its
    flow-warped predecessor, over the reliable pixels only."""
    difference = (current - warp(previous, backward)).pow(2).mean(dim=1, keepdim=True)
    reliable = mask.sum()
    return float((difference * mask).sum() / reliable) if reliable > 0 else 0.0


class CheckFlow:
    """A second optical flow, independent of the one the chain optimises against (OpenCV's
    Farneback on the full grey frames), to measure flicker honestly."""

    def __call__(self, source: np.ndarray, target: np.ndarray) -> torch.Tensor:
        flow = cv2.calcOpticalFlowFarneback(_grey(source), _grey(target), None, 0.5, 4, 15, 5, 5, 1.1, 0)
        return torch.from_numpy(flow).permute(2, 0, 1).unsqueeze(0).contiguous()
