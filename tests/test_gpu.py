"""Run where CUDA is present (skipped elsewhere): the same stylizer on the GPU."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import step_bytes
from pipeline import StyleSettings, evaluate, stylize_image
from pipeline.engine import memory
from pipeline.engine.device import resolve_device
from pipeline.engine.network import network_for
from pipeline.engine.stylize import stylize_batch

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


def test_auto_precision_is_mixed_and_within_five_percent_of_fp32(photo, starry):
    auto = StyleSettings(size=256, iterations=100, device="cuda", tolerance=0)
    stylizer = network_for(auto)
    assert stylizer.precision.dtype is torch.bfloat16
    assert stylizer.model.layers.conv1_1.weight.is_contiguous(memory_format=torch.channels_last)
    full = auto.model_copy(update={"precision": "fp32"})
    mixed = stylize_image(photo, starry, auto)
    fp32 = stylize_image(photo, starry, full)
    judged = evaluate(mixed.tensor, photo, starry, full)
    assert judged["total"] == pytest.approx(fp32.losses["total"], rel=0.05)


def test_adam_steps_do_not_wait_for_the_gpu(photo, starry):
    """Syncs come from the early-stop check every 10 steps and the final losses, not from each step."""

    def syncs(steps: int) -> int:
        settings = StyleSettings(size=128, iterations=steps, optimizer="adam", device="cuda", tolerance=0)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                stylize_image(photo, starry, settings)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    syncs(10)  # warm: style Grams cached, kernels chosen
    assert syncs(60) - syncs(20) <= 4 + 2  # 40 more steps: 4 window checks, a little slack


def test_memory_estimate_covers_the_measured_peak(photo, starry):
    settings = StyleSettings(size=512, iterations=5, device="cuda", tolerance=0)
    stylizer = network_for(settings)
    stylize_image(photo, starry, settings)  # warm caches so the measured step is a steady one
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = stylize_image(photo, starry, settings)
    height, width = result.sizes[-1]
    used = torch.cuda.max_memory_allocated() - before
    estimate = step_bytes(stylizer, height * width) - memory.FIXED_BYTES
    assert used <= estimate + memory.FIXED_BYTES, (used, estimate)
    assert used >= estimate / 3, (used, estimate)  # an estimate, not a wild overcount


def test_batched_photos_match_single_runs(photo, starry):
    settings = StyleSettings(size=256, iterations=60, device="cuda", tolerance=0, optimizer="adam")
    batch = stylize_batch([photo, photo], starry, settings)
    single = stylize_image(photo, starry, settings)
    for result in batch:
        assert result.losses["total"] == pytest.approx(single.losses["total"], rel=0.05)
