"""The fast engine's network and its model file: any picture size in, the same size out in
[0, 1]; a saved model loads back to the same outputs; and every broken, foreign or hostile
file is refused in one line naming it (exit 2), without unpickling or running anything."""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from common import STARRY, invoke, one_line_error
from pipeline.engine import model_file
from pipeline.engine.fastnet import DESIGNS, LOGIT_EPS, FastNetSpec, build_fastnet, expected_shapes
from pipeline.engine.model_file import FORMAT_VERSION, ModelInfo, Painting, describe_model, load_model, save_model
from pipeline.errors import InputError

TINY = FastNetSpec(width=8, blocks=1)  # the lean layout, small enough to build and save in milliseconds


class Marker:
    """Unpickling this creates `path`: a stand-in for the code a hostile checkpoint runs."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _info(spec: FastNetSpec = TINY, **changes) -> ModelInfo:
    values = dict(architecture=spec, paintings=[Painting.of_file(STARRY, 1.0)], strength=0.5, training_size=64,
                  steps=10, seconds=1.5, device="cpu", judge={"style": 0.25, "content": 0.5})
    return ModelInfo(**{**values, **changes})


def _randomised(spec: FastNetSpec, seed: int = 0, scale: float = 0.2):
    """A network whose every weight is random (an untrained lean net is the identity)."""
    network = build_fastnet(spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale + (1.0 if parameter.dim() == 1 else 0.0))
    return network.eval()


def _saved(tmp_path: Path, spec: FastNetSpec = TINY, name: str = "model.safetensors") -> Path:
    return save_model(tmp_path / name, _randomised(spec).state_dict(), _info(spec))


def _header_of(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def _with_header(path: Path, header: dict, data: bytes) -> Path:
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data)
    return path


def _with_metadata(path: Path, spec: FastNetSpec, metadata: dict[str, str] | None, state: dict | None = None) -> Path:
    """A well-formed safetensors file holding `state` (by default, `spec`'s tensors) and `metadata`, as is."""
    save_file(state if state is not None else build_fastnet(spec).state_dict(), path, metadata=metadata)
    return path


def _stylize_metadata(**changes) -> dict[str, str]:
    values = json.loads(_info().header_metadata()["stylize"])
    values.update(changes)
    return {"stylize": json.dumps(values)}


def _refused(path: Path, *fragments: str) -> str:
    return one_line_error(invoke("info", path), str(path), *fragments)


# The network


@pytest.mark.parametrize("design", sorted(DESIGNS))
@pytest.mark.parametrize("size", [(37, 53), (3, 2), (64, 32)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_any_size_comes_back_the_same_size_within_0_and_1(design, size):
    network = _randomised(DESIGNS[design], scale=1.0)  # large weights, to push outputs against both ends
    picture = torch.rand(2, 3, *size)
    with torch.inference_mode():
        out = network(picture)
        extremes = network(torch.cat([torch.zeros(1, 3, *size), torch.ones(1, 3, *size)]))
    for result in (out, extremes):
        assert result.shape == (result.shape[0], 3, *size)
        assert torch.isfinite(result).all() and result.min() >= 0 and result.max() <= 1


def test_an_untrained_lean_net_returns_its_input():
    picture = torch.rand(1, 3, 37, 53)
    with torch.inference_mode():
        out = build_fastnet("lean").eval()(picture)
    assert torch.allclose(out, picture.clamp(LOGIT_EPS, 1 - LOGIT_EPS), atol=1e-5)


def test_johnson_design_has_the_reference_layout():
    shapes = expected_shapes(DESIGNS["johnson"])
    assert shapes["head.0.conv.weight"] == (32, 3, 9, 9)  # c9s1-32
    assert shapes["head.2.conv.weight"] == (128, 64, 3, 3)  # d128
    assert sum(name.endswith("conv1.conv.weight") for name in shapes) == 5
    assert shapes["tail.2.conv.weight"] == (3, 32, 9, 9)  # c9s1-3
    # pytorch/examples' TransformerNet has 1,679,235 parameters; these convs drop the 1,600
    # biases that the instance norm after each would cancel.
    assert sum(torch.Size(shape).numel() for shape in shapes.values()) == 1_679_235 - 1_600


def test_spec_round_trips_through_json_and_refuses_what_it_cannot_build():
    for spec in DESIGNS.values():
        assert FastNetSpec.from_dict(json.loads(json.dumps(spec.as_dict()))) == spec
    assert DESIGNS["johnson"].design == "johnson" and TINY.design == "custom"
    for bad in ({**TINY.as_dict(), "down": "octave"}, {**TINY.as_dict(), "factor": 3}, {**TINY.as_dict(), "width": 10**9},
                {**TINY.as_dict(), "layers": 3}, {"width": 8}, [1, 2]):
        with pytest.raises(ValueError):
            FastNetSpec.from_dict(bad)


# Saving and loading


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_round_trip_gives_identical_outputs_and_leaves_no_temporary(tmp_path, design):
    network = _randomised(DESIGNS[design])
    path = save_model(tmp_path / "m.safetensors", network.state_dict(), _info(DESIGNS[design]))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    loaded, info = load_model(path)
    assert not loaded.training and info.architecture == DESIGNS[design] and info.format_version == FORMAT_VERSION
    picture = torch.rand(1, 3, 37, 53)
    with torch.inference_mode():
        assert torch.equal(loaded(picture), network(picture))


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    before = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(model_file, "save_file", half_written)
    with pytest.raises(OSError):
        save_model(path, _randomised(TINY, seed=1).state_dict(), _info())
    assert [p.name for p in tmp_path.iterdir()] == [path.name] and path.read_bytes() == before


def test_save_refuses_tensors_of_another_architecture(tmp_path):
    with pytest.raises(ValueError, match="does not match"):
        save_model(tmp_path / "m.safetensors", build_fastnet(FastNetSpec(width=16, blocks=1)).state_dict(), _info())
    assert list(tmp_path.iterdir()) == []


def test_info_prints_the_metadata_one_key_a_line(tmp_path):
    path = _saved(tmp_path)
    result = invoke("info", path)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in result.output.strip().splitlines())
    assert lines["paintings"].strip().startswith("starry_night.jpg (weight 1")
    assert "width 8, 1 residual blocks" in lines["architecture"] and lines["strength"].strip() == "0.5"
    assert set(describe_model(path)) == {key.strip() for key in lines}


# Refusals: one line naming the file, exit 2, nothing executed


def test_missing_empty_and_folder_are_refused(tmp_path):
    _refused(tmp_path / "none.safetensors", "not found")
    (tmp_path / "empty.safetensors").touch()
    _refused(tmp_path / "empty.safetensors", "empty")
    (tmp_path / "folder.safetensors").mkdir()
    _refused(tmp_path / "folder.safetensors", "folder")


@pytest.mark.parametrize("where", ["in the length", "after the length", "in the header", "after the header",
                                   "in the data", "one byte short"])
def test_truncated_files_are_refused(tmp_path, where):
    whole = _saved(tmp_path).read_bytes()
    (length,) = struct.unpack("<Q", whole[:8])
    cut = {"in the length": 5, "after the length": 8, "in the header": 8 + length // 2, "after the header": 8 + length,
           "in the data": (8 + length + len(whole)) // 2, "one byte short": len(whole) - 1}[where]
    path = tmp_path / "cut.safetensors"
    path.write_bytes(whole[:cut])
    _refused(path, "truncated")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torch_save_checkpoints_are_refused_unopened(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = tmp_path / "model.safetensors"
    torch.save({"state": build_fastnet(TINY).state_dict(), "payload": Marker(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    _refused(path, "pickle/PyTorch checkpoint, which stylize never loads", "stylize train")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_raw_pickles_are_refused_and_never_run(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(Marker(marker), protocol=protocol))
    line = _refused(path)
    if protocol >= 2:  # from protocol 2 on, a pickle says so in its first two bytes
        assert "pickle/PyTorch checkpoint, which stylize never loads" in line
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the check above could fail: this payload does run when unpickled
    assert marker.exists()


def test_zip_archives_and_random_bytes_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.txt", "not a model")
    (tmp_path / "a.safetensors").write_bytes(buffer.getvalue())
    _refused(tmp_path / "a.safetensors", "zip archive", "never loads")
    (tmp_path / "b.safetensors").write_bytes(random.Random(0).randbytes(4096))
    _refused(tmp_path / "b.safetensors", "not a safetensors model file")


def test_header_that_is_not_json_is_refused(tmp_path):
    text = b"{not json at all}   "
    (tmp_path / "m.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    _refused(tmp_path / "m.safetensors", "header is not JSON")


def test_safetensors_without_stylize_metadata_is_refused(tmp_path):
    _refused(_with_metadata(tmp_path / "a.safetensors", TINY, None), "no stylize metadata")
    _refused(_with_metadata(tmp_path / "b.safetensors", TINY, {"format": "pt"}), "no stylize metadata")
    _refused(_with_metadata(tmp_path / "c.safetensors", TINY, {"stylize": "{oops"}), "stylize metadata is not JSON")


def test_a_newer_format_is_refused_with_both_versions(tmp_path):
    path = _with_metadata(tmp_path / "m.safetensors", TINY, _stylize_metadata(format_version=FORMAT_VERSION + 1))
    _refused(path, f"made by a newer stylize: format {FORMAT_VERSION + 1}, this one reads {FORMAT_VERSION}")


@pytest.mark.parametrize("architecture", [{**TINY.as_dict(), "down": "octave"}, {**TINY.as_dict(), "width": 10**9},
                                          {"width": 8}, "lean"], ids=["kind", "huge", "partial", "name"])
def test_unknown_architectures_are_refused(tmp_path, architecture):
    path = _with_metadata(tmp_path / "m.safetensors", TINY, _stylize_metadata(architecture=architecture))
    _refused(path, "unknown architecture")


@pytest.mark.parametrize("field, value", [("strength", -1), ("device", "x" * 10_000), ("judge", {str(n): 1.0 for n in range(100)}),
                                          ("paintings", [])])
def test_invalid_metadata_is_refused(tmp_path, field, value):
    path = _with_metadata(tmp_path / "m.safetensors", TINY, _stylize_metadata(**{field: value}))
    assert len(_refused(path, f"metadata is invalid: {field}")) < 300


@pytest.mark.parametrize("change", ["shapes", "missing", "unexpected"])
def test_tensors_that_do_not_fit_the_architecture_are_refused(tmp_path, change):
    state = dict(build_fastnet(TINY).state_dict())
    if change == "shapes":
        state = dict(build_fastnet(FastNetSpec(width=16, blocks=1)).state_dict())
    elif change == "missing":
        state.pop("body.0.conv1.conv.weight")
    else:
        state["extra.weight"] = torch.zeros(2)
    path = _with_metadata(tmp_path / "m.safetensors", TINY, _info().header_metadata(), state)
    _refused(path, "does not match its architecture", {"shapes": "has shape", "missing": "missing tensor",
                                                       "unexpected": "unexpected tensor extra.weight"}[change])


def test_non_finite_or_integer_tensors_and_trailing_bytes_are_refused(tmp_path):
    state = dict(build_fastnet(TINY).state_dict())
    state["head.1.norm.weight"] = torch.full_like(state["head.1.norm.weight"], float("nan"))
    _refused(_with_metadata(tmp_path / "nan.safetensors", TINY, _info().header_metadata(), state), "NaN")
    state["head.1.norm.weight"] = torch.zeros(state["head.1.norm.weight"].shape, dtype=torch.int32)
    _refused(_with_metadata(tmp_path / "int.safetensors", TINY, _info().header_metadata(), state), "a model's tensors are")
    good = _saved(tmp_path, name="good.safetensors")
    header, data = _header_of(good)
    _refused(_with_header(tmp_path / "long.safetensors", header, data + b"\0" * 8), "follow its last tensor")


def test_load_model_raises_input_error_naming_the_file(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x80\x04" + b"\0" * 32)
    with pytest.raises(InputError) as caught:
        load_model(path)
    assert caught.value.path == path and str(caught.value).startswith(str(path))
