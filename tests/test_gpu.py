"""Run where CUDA is present (skipped elsewhere): the same stylizer on the GPU."""

from __future__ import annotations

import pytest
import torch

from pipeline import StyleSettings, stylize_image
from pipeline.device import resolve_device

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_auto_picks_cuda():
    assert resolve_device("auto").type == "cuda"


def test_gpu_stylization_lowers_the_style_loss_like_the_cpu(photo, starry):
    cuda = StyleSettings(size=64, iterations=30, device="cuda", tolerance=0)
    first = []
    result = stylize_image(photo, starry, cuda, lambda p: first.append(p.losses["style"]) if p.iteration == 1 else None)
    assert result.device.startswith("cuda")
    assert result.losses["style"] < first[0] / 2
    cpu = stylize_image(photo, starry, cuda.model_copy(update={"device": "cpu"}))
    assert result.losses["style"] == pytest.approx(cpu.losses["style"], rel=0.25)
