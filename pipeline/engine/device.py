"""Choosing the torch device (`auto` prefers CUDA, then Apple MPS, then CPU) and how
fast it computes: the autocast dtype for the network and the CUDA backend switches."""

from __future__ import annotations

import functools

from dataclasses import dataclass

import torch

from ..errors import EnvironmentProblem
from ..settings import Precision


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EnvironmentProblem(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EnvironmentProblem(
                f"device {name!r} was asked for but CUDA is not available here: use --device cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EnvironmentProblem(
                f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentProblem("device 'mps' was asked for but is not available here: use cpu or auto")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


@dataclass(frozen=True)
class NetworkPrecision:
    """Which VGG layers run under bf16 autocast: those from `reduced_from` on (none if dtype is None)."""

    dtype: torch.dtype | None = None
    reduced_from: str = "conv1_1"

    def __str__(self) -> str:
        if self.dtype is None:
            return "fp32"
        return "bf16" if self.reduced_from == "conv1_1" else f"fp32 before {self.reduced_from}, bf16 from there"


# In mixed precision the first two blocks stay fp32: bf16 noise in the fine-texture
# taps (relu1_1, relu2_1) upsets L-BFGS's curvature estimates (final loss up to 6.5%
# above fp32 at 64 px), while those blocks are only a quarter of the arithmetic.
MIXED_FROM = "conv3_1"


def network_precision(device: torch.device, precision: Precision) -> NetworkPrecision:
    """`auto` is mixed on CUDA GPUs with bf16 tensor cores and fp32 elsewhere: on CPUs
    bf16 is slower than fp32, so it must be asked for."""
    if precision == "auto":
        precision = "mixed" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return NetworkPrecision()
    return NetworkPrecision(torch.bfloat16, MIXED_FROM if precision == "mixed" else "conv1_1")


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native here: CUDA GPUs with bf16 tensor cores, CPUs with
    AVX-512 BF16 or AMX. Where it is, the fast engine's network and a training step of its
    perceptual loss run in about half the time of fp32 (measured on a 2-core AVX-512 BF16 CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    """Without AVX-512 BF16 or AMX oneDNN emulates bf16, slower than fp32 (mkldnn's own "bf16
    supported" says yes to any AVX-512, so it is not the test)."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def tune_backends(device: torch.device) -> None:
    """TF32 for whatever still runs in fp32 on CUDA (the Gram matrices accumulate in fp32
    either way), and cuDNN's autotuner: the same shapes repeat for hundreds of steps."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def gpu_memory_note() -> str | None:
    """Memory this process holds on its CUDA device (now, and at most), or None where it uses none."""
    if not torch.cuda.is_initialized():
        return None
    gib = 2**30
    return f"GPU memory {torch.cuda.memory_allocated() / gib:.2f} GiB (peak {torch.cuda.max_memory_allocated() / gib:.2f} GiB)"
