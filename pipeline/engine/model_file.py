"""The trained model file: a feed-forward network's tensors in safetensors, with what made it
(architecture, paintings, training) as JSON in the same file's header.

Why safetensors and never pickle: a model file is the one thing in stylize people will share
and download, and unpickling (torch.load, even with weights_only on older torch) runs whatever
code the file's author put in it. safetensors is a length, a JSON header and raw tensor bytes:
reading one runs nothing. So `load_model` only ever reads bytes and JSON; it recognises
pickles and torch.save's zip archives by their first bytes and refuses them by name, before
anything is parsed, and it checks the header against the architecture (on the meta device)
before reading a tensor, so a hostile or broken file costs neither memory nor trust.

Layout: the safetensors header's `__metadata__` holds strings only, so all of ours is one
JSON document under the key "stylize" (`ModelInfo`); FORMAT_VERSION is its version.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..media.files import check_destination, file_digest, name_too_long, partial_path, publish, require_file, timestamp
from ..version import __version__
from .fastnet import FastNet, FastNetSpec, expected_shapes

FORMAT_VERSION = 1
METADATA_KEY = "stylize"
MAX_HEADER = 100_000_000  # bytes; safetensors' own limit on the JSON header
# What a model's tensors may be stored as (they are loaded as float32).
DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
PICKLE_REFUSAL = ("a pickle/PyTorch checkpoint, which stylize never loads: loading one runs its author's code; "
                  "train a model with stylize train")
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOLS = range(2, 6)  # \x80 then the protocol byte opens every pickle since protocol 2
# Text from a file is printed by `stylize info`: a hostile file's megabyte of "device" should not be.
Short = Annotated[str, Field(max_length=100)]


class Painting(BaseModel):
    """A painting a model was trained on: its file name, the SHA-256 of its bytes and its weight in the blend."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(max_length=1024)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    weight: float = Field(gt=0)

    @classmethod
    def of_file(cls, path: str | Path, weight: float = 1.0) -> "Painting":
        return cls(name=Path(path).name, sha256=file_digest(Path(path)), weight=weight)


class ModelInfo(BaseModel):
    """What a model file says about itself. Unknown keys are ignored, so a later stylize can add
    one without a new format version; changing or removing one needs a new FORMAT_VERSION."""

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    format_version: int = FORMAT_VERSION
    architecture: FastNetSpec
    paintings: list[Painting] = Field(min_length=1, max_length=64)
    strength: float = Field(ge=0)
    training_size: int = Field(gt=0, description="long edge of the training crops, in pixels")
    picture_edge: Optional[int] = Field(None, gt=0, description="long edge of the pictures the model was made for: its strokes are sized for them")
    steps: int = Field(ge=0)
    seconds: float = Field(ge=0, description="training time")
    device: Short
    judge: Optional[dict[Short, float]] = Field(max_length=16, default=None, description="the judge's mean verdict on a few pictures trained on: style distance over the photo's own, content distance")
    stylize_version: Short = __version__
    created: Short = Field(default_factory=timestamp)

    @field_validator("architecture", mode="before")
    @classmethod
    def _spec(cls, value: Any) -> FastNetSpec:
        return value if isinstance(value, FastNetSpec) else FastNetSpec.from_dict(value)

    def header_metadata(self) -> dict[str, str]:
        return {METADATA_KEY: json.dumps(self.model_dump(mode="json"), sort_keys=True)}


def save_model(path: str | Path, state_dict: Mapping[str, torch.Tensor], info: ModelInfo) -> Path:
    """Write a model file atomically: to a temporary beside `path`, renamed into place once whole,
    so a reader (or the next run after a crash) never finds half a model. The tensors must be
    the ones `info.architecture` builds, so that every file written can be read back."""
    path = check_destination(path)
    expected = expected_shapes(info.architecture)
    problem = _mismatch({name: tuple(tensor.shape) for name, tensor in state_dict.items()}, expected)
    if problem:
        raise ValueError(f"the state dict does not match the architecture: {problem}")
    tensors = {name: state_dict[name].detach().to("cpu", torch.float32).contiguous() for name in expected}
    temporary = partial_path(path)
    try:
        save_file(tensors, temporary, metadata=info.header_metadata())
        return publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_model(path: str | Path) -> tuple[FastNet, ModelInfo]:
    """The network in a model file, in eval mode, and what the file says about it; an InputError
    naming the file, one line, for anything else. Nothing is unpickled or executed."""
    path = Path(path)
    header, data_size = _read_header(path)
    info = _read_info(header, path)
    tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
    problem = _mismatch({name: tuple(entry["shape"]) for name, entry in tensors.items()}, expected_shapes(info.architecture))
    if problem:
        raise InputError(f"does not match its architecture ({info.architecture.design}): {problem}", path)
    try:
        loaded = load_file(path)
    except (SafetensorError, OSError) as error:
        raise InputError(f"cannot be read as safetensors: {_one_line(error)}", path) from None
    for name, tensor in loaded.items():
        if not torch.isfinite(tensor).all():
            raise InputError(f"tensor {name} holds NaN or infinite values", path)
    network = FastNet(info.architecture)
    network.load_state_dict({name: tensor.float() for name, tensor in loaded.items()}, strict=True)
    return network.eval(), info


def describe_model(path: str | Path) -> dict[str, str]:
    """`stylize info MODEL`: the model's metadata as label -> one line of text (the file is fully
    checked first, tensors included, so "info" says whether it would load)."""
    network, info = load_model(path)
    parameters = sum(parameter.numel() for parameter in network.parameters())
    paintings = "; ".join(f"{p.name} (weight {p.weight:g}, sha256 {p.sha256[:12]})" for p in info.paintings)
    judge = ", ".join(f"{name} {value:.4g}" for name, value in info.judge.items()) if info.judge else "not measured"
    return {
        "model": str(path),
        "format": f"safetensors, stylize model format {info.format_version}",
        "architecture": info.architecture.describe(),
        "parameters": f"{parameters:,}",
        "paintings": paintings,
        "strength": f"{info.strength:g}",
        "training size": f"{info.training_size} px crops" + (f" of pictures {info.picture_edge} px long" if info.picture_edge else ""),
        "steps": str(info.steps),
        "training time": f"{info.seconds:.1f} s on {info.device}",
        "judge": judge,
        "made by": f"stylize {info.stylize_version}",
        "created": info.created,
    }


def _read_header(path: Path) -> tuple[dict, int]:
    """The header's JSON object and the size of the data after it, with each tensor's place in
    that data checked (so a truncated file is named as such, whichever part is missing)."""
    if name_too_long(path):
        raise InputError(name_too_long(path), path)
    require_file(path, "a model file")
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(0)
            start = stream.read(9)
            _refuse_by_magic(start, path)
            if size < 8:
                raise InputError(f"is truncated: {size} bytes, too short for a safetensors header", path)
            (length,) = struct.unpack("<Q", start[:8])
            if length > MAX_HEADER or (len(start) > 8 and start[8:9] != b"{"):
                raise InputError("is not a safetensors model file (it does not start with a safetensors header)", path)
            if length > size - 8:
                raise InputError(f"is truncated: its header is {length:,} bytes long by its first 8 bytes, and only {size - 8:,} follow them", path)
            raw = start[8:] + stream.read(length - len(start[8:]))
    except OSError as error:
        raise InputError(f"cannot be read: {error.strerror or error}", path) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"is not a safetensors model file: its header is not JSON ({_one_line(error)})", path) from None
    if not isinstance(header, dict):
        raise InputError("is not a safetensors model file: its header is not a JSON object", path)
    data_size = size - 8 - length
    _check_tensor_places(header, data_size, path)
    return header, data_size


def _refuse_by_magic(start: bytes, path: Path) -> None:
    """torch.save's archives and raw pickles, by their first bytes and nothing more."""
    if start.startswith(ZIP_MAGIC):
        raise InputError(f"is a zip archive, as torch.save writes: {PICKLE_REFUSAL}", path)
    # A safetensors file may also start with \x80 (a header of 128 bytes), but its ninth byte is "{".
    if len(start) >= 2 and start[0] == 0x80 and start[1] in PICKLE_PROTOCOLS and start[8:9] != b"{":
        raise InputError(f"is {PICKLE_REFUSAL}", path)


def _check_tensor_places(header: dict, data_size: int, path: Path) -> None:
    end_of_data = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("dtype"), str) and _ints(entry.get("shape"))
                and _ints(entry.get("data_offsets")) and len(entry["data_offsets"]) == 2):
            raise InputError(f"is not a valid safetensors file: tensor {_short(name)} has no dtype, shape and data_offsets", path)
        if entry["dtype"] not in DTYPES:
            raise InputError(f"tensor {_short(name)} is {_short(entry['dtype'])}; a model's tensors are {', '.join(DTYPES)}", path)
        begin, end = entry["data_offsets"]
        if end > data_size:
            raise InputError(f"is truncated: tensor {_short(name)} ends at byte {end:,} of the data, the file holds {data_size:,}", path)
        if begin > end or end - begin != math.prod(entry["shape"]) * DTYPES[entry["dtype"]]:
            raise InputError(f"is not a valid safetensors file: tensor {_short(name)}'s data_offsets do not fit its shape", path)
        end_of_data = max(end_of_data, end)
    if end_of_data < data_size:
        raise InputError(f"is not a valid safetensors file: {data_size - end_of_data:,} bytes follow its last tensor", path)


def _read_info(header: dict, path: Path) -> ModelInfo:
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise InputError("has no stylize metadata: it is a safetensors file, but not a model stylize trained "
                         "(train one with stylize train)", path)
    try:
        values = json.loads(metadata[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as error:
        raise InputError(f"its stylize metadata is not JSON ({_one_line(error)})", path) from None
    if not isinstance(values, dict):
        raise InputError("its stylize metadata is not a JSON object", path)
    version = values.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"its stylize metadata has no format version (format_version: {_short(repr(version))})", path)
    if version > FORMAT_VERSION:
        raise InputError(f"was made by a newer stylize: format {version}, this one reads {FORMAT_VERSION}; upgrade stylize", path)
    if version != FORMAT_VERSION:
        raise InputError(f"has unknown format {version}; this stylize reads format {FORMAT_VERSION}", path)
    try:
        spec = FastNetSpec.from_dict(values.get("architecture"))
    except (TypeError, ValueError) as error:
        raise InputError(f"has an unknown architecture: {_one_line(error)}", path) from None
    try:
        return ModelInfo.model_validate({**values, "architecture": spec})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"its stylize metadata is invalid: {where}: {_one_line(first['msg'])}", path) from None


def _mismatch(found: dict[str, tuple], expected: dict[str, tuple]) -> str | None:
    """What differs between two {tensor name: shape} maps, in a line, or None."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    if missing:
        return f"missing tensor{'s' * (len(missing) > 1)} {_listed(missing)}"
    if unexpected:
        return f"unexpected tensor{'s' * (len(unexpected) > 1)} {_listed(unexpected)}"
    for name, shape in expected.items():
        if tuple(found[name]) != shape:
            return f"tensor {_short(name)} has shape {list(found[name])}, the architecture needs {list(shape)}"
    return None


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _listed(names: list[str], most: int = 3) -> str:
    shown = ", ".join(_short(name) for name in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _short(text: str, most: int = 80) -> str:
    """A name from the file, kept short: a hostile header's names can be a megabyte long."""
    text = str(text)
    return text if len(text) <= most else text[: most - 3] + "..."


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())

