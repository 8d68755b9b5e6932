"""Overlapping tiles, so the largest levels are optimised in bounded memory."""

from __future__ import annotations

import math

import torch

Box = tuple[int, int, int, int]  # top, left, height, width


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_boxes(height: int, width: int, tile: int, overlap: int = 0) -> list[Box]:
    """Boxes of at most tile x tile covering the image, neighbours sharing >= overlap pixels."""
    overlap = min(overlap, tile // 2)
    return [
        (top, left, min(tile, height), min(tile, width))
        for top in _starts(height, tile, overlap)
        for left in _starts(width, tile, overlap)
    ]


def feather(box: Box, height: int, width: int, overlap: int, device: torch.device) -> torch.Tensor:
    """Blend weights for one tile: 1 inside, ramping down towards edges shared with a neighbour."""
    top, left, h, w = box

    def ramp(size: int, at_start: bool, at_end: bool) -> torch.Tensor:
        weights = torch.ones(size, device=device)
        fade = min(overlap, size // 2)
        if fade:
            steps = torch.linspace(1.0 / (fade + 1), fade / (fade + 1), fade, device=device)
            if not at_start:
                weights[:fade] = steps
            if not at_end:
                weights[-fade:] = steps.flip(0)
        return weights

    rows = ramp(h, top == 0, top + h == height)
    cols = ramp(w, left == 0, left + w == width)
    return (rows[:, None] * cols[None, :])[None, None]
