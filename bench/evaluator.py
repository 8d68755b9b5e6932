"""One judge for every tool: the same VGG19 (Caffe weights), layers and weighting score
any output against its content and style, so "reaching a loss" means the same everywhere."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import StyleSettings, evaluate
from pipeline.engine.tensors import as_tensor, resize_long_edge

# fp32 whatever the device, and the library's default layers and weights, fixed here so that changing a default
# never moves the yardstick.
JUDGE = dict(
    precision="fp32",
    weights="caffe",
    content_layers=("relu4_2",),
    style_layers=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    content_weight=1.0,
    style_weight=30.0,
    tv_weight=0.0,
    style_scale=1.0,
)


def score(output: Path | torch.Tensor, content: Path, style: Path, size: int, device: str = "auto") -> dict[str, float]:
    """content: relative feature error; style: weighted relative Gram error; total: their sum.
    Every output, a file or an image tensor, is judged at the same long edge, `size`."""
    settings = StyleSettings(device=device, **JUDGE)
    image = resize_long_edge(as_tensor(output), size)
    losses = evaluate(image, content, [style], settings)
    return {"content": losses["content"], "style": losses["style"], "total": losses["content"] + losses["style"]}
