"""Choosing the torch device: `auto` prefers CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import EnvironmentProblem


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
