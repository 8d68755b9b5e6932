"""VGG19's layer table: the names settings are checked against and the widths the engine
builds the network from. No torch here, so checking a manifest never loads it."""

from __future__ import annotations

from typing import Sequence

# Output channels of each conv, block by block: torchvision's configuration "E".
VGG19_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)


def _layer_names() -> tuple[str, ...]:
    """conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ... pool5."""
    names = []
    for block, widths in enumerate(VGG19_BLOCKS, start=1):
        for conv in range(1, len(widths) + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYER_NAMES: tuple[str, ...] = _layer_names()
CONV_NAMES: tuple[str, ...] = tuple(name for name in LAYER_NAMES if name.startswith("conv"))


def check_layers(layers: Sequence[str], setting: str) -> None:
    unknown = [name for name in layers if name not in LAYER_NAMES]
    if unknown:
        raise ValueError(f"{setting}: unknown VGG19 layer {unknown[0]!r}; use names like relu4_2 or conv5_1")
