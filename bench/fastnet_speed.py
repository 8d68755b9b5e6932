"""How fast each feed-forward design runs on this CPU: frames per second at 320x240, batch 1.

    python bench/fastnet_speed.py                 # every design, the lean width x blocks grid
    python bench/fastnet_speed.py --threads 4 --size 640x480

For each network (the named designs in pipeline/engine/fastnet.py, then the lean design at
widths 16, 24, 32, 48 x 3 and 5 residual blocks) it prints parameters, multiply-adds per frame,
and frames per second in four ways: float32, channels_last, bf16 autocast, and both. Whether
channels_last or bf16 helps depends on the CPU (oneDNN's kernels, AVX-512 BF16 or AMX), so
both are measured here rather than assumed.

Each figure is the median, and in brackets the best, of at least 7 timed frames under
torch.inference_mode after warm-up, the four variants taking turns frame by frame so that
another process's burst slows them alike. Where other processes share the CPU the best is the
steadier figure of the two; the load average is printed before and after for that reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.engine.fastnet import DEFAULT_DESIGN, DESIGNS, FastNetSpec, build_fastnet  # noqa: E402

WIDTHS = (16, 24, 32, 48)
BLOCKS = (3, 5)
WARMUP = 3
MIN_RUNS, MAX_RUNS, MIN_SECONDS = 7, 40, 2.0
VARIANTS = {"fp32": (False, False), "channels_last": (True, False), "bf16": (False, True), "cl+bf16": (True, True)}


def networks() -> Iterator[tuple[str, FastNetSpec]]:
    seen = set()
    for name, spec in DESIGNS.items():
        seen.add(spec)
        yield name + (" (default)" if name == DEFAULT_DESIGN else ""), spec
    for width in WIDTHS:
        for blocks in BLOCKS:
            spec = dataclasses.replace(DESIGNS["lean"], width=width, blocks=blocks)
            if spec not in seen:
                yield f"lean w{width} b{blocks}", spec


def multiply_adds(network: torch.nn.Module, picture: torch.Tensor) -> int:
    """Multiply-adds of the convolutions in one forward pass (the rest is a few percent)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() // output.shape[0] * (module.in_channels // module.groups) * kernel

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        network(picture)
    for hook in hooks:
        hook.remove()
    return total


def frames_per_second(spec: FastNetSpec, picture: torch.Tensor) -> dict[str, tuple[float, float] | None]:
    """Median and best frames per second of each variant, None where it does not run here. The
    variants take turns, one frame each, so that another process's burst slows them all alike."""
    runs = {}
    for name, (channels_last, bf16) in VARIANTS.items():
        network = build_fastnet(spec).eval()
        frame = picture
        if channels_last:
            network = network.to(memory_format=torch.channels_last)
            frame = picture.contiguous(memory_format=torch.channels_last)
        runs[name] = (network, frame, bf16)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    failed: set[str] = set()
    began = None
    while began is None or len(seconds["fp32"]) < MIN_RUNS or (
            time.perf_counter() - began < MIN_SECONDS * len(VARIANTS) and len(seconds["fp32"]) < MAX_RUNS):
        for name, (network, frame, bf16) in runs.items():
            if name in failed:
                continue
            try:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    for _ in range(WARMUP if began is None else 0):
                        network(frame)
                    start = time.perf_counter()
                    network(frame)
                    seconds[name].append(time.perf_counter() - start)
            except RuntimeError as error:  # an operator without a bf16 or channels_last kernel here
                failed.add(name)
                print(f"  {name}: {error.__class__.__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
        began = began or time.perf_counter()
    return {name: None if name in failed else (1 / statistics.median(times), 1 / min(times)) for name, times in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--only", nargs="*", help="names of the rows to run (e.g. johnson 'lean w16 b3')")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    width, height = (int(side) for side in arguments.size.lower().split("x"))
    picture = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {width}x{height}, batch 1; "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; load average {_load()}")
    header = f"{'network':20} {'params':>9} {'GMAC':>6}" + "".join(f" {name:>15}" for name in VARIANTS)
    print(header + "\n" + "-" * len(header))
    for name, spec in networks():
        if arguments.only and name.split(" (")[0] not in arguments.only:
            continue
        network = build_fastnet(spec).eval()
        parameters = sum(p.numel() for p in network.parameters())
        gmac = multiply_adds(network, picture) / 1e9
        measured = frames_per_second(spec, picture)
        cells = [f"{'n/a':>15}" if m is None else f"{m[0]:6.1f} ({m[1]:6.1f})" for m in measured.values()]
        print(f"{name:20} {parameters:9,} {gmac:6.2f}" + "".join(f" {cell:>15}" for cell in cells), flush=True)
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
