"""One score for every tool in the races: the judge (pipeline/engine/judge.py) on any output,
combined as content + 30 x style so that the races keep the scale their thresholds were set on."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import StyleSettings
from pipeline.engine.judge import distances
from pipeline.engine.tensors import as_tensor, resize_long_edge

STYLE_SHARE = 30.0  # style distances are about 30x smaller than content ones at the races' quality


def score(output: Path | torch.Tensor, content: Path, style: Path, size: int, device: str = "auto") -> dict[str, float]:
    """content: relative feature error; style: mean relative Gram error; total: content + STYLE_SHARE x style.
    Every output, a file or an image tensor, is judged at the same long edge, `size`."""
    image = resize_long_edge(as_tensor(output), size)
    style_distance, content_distance = distances(image, content, [style], StyleSettings(device=device))
    return {"content": content_distance, "style": style_distance, "total": content_distance + STYLE_SHARE * style_distance}
