"""`stylize train`: a model trained on the user's photos, resumable to the same weights after
Ctrl-C or SIGKILL, then used by `stylize image --model` through the same output path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from common import PHOTO, REPO, STARRY, invoke
from pipeline.engine.training import TrainingOptions, train_model
from pipeline.settings import Style, StyleSettings

SETTINGS = StyleSettings(device="cpu")
OPTIONS = dict(size=32, batch_size=2, seed=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        Image.open(REPO / f"samples/photos/{name}.jpg").resize((64, 48)).save(folder / f"{name}.jpg")
    return folder


def weights(path: Path) -> dict[str, torch.Tensor]:
    return {name: value for name, value in load_file(str(path)).items()}


def test_train_writes_a_model_that_stylize_image_and_info_use(tmp_path, photos):
    model = tmp_path / "starry.safetensors"
    trained = invoke("train", "--style", STARRY, "--on", photos, "-o", model, "--size", "32", "--steps", "3", "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    assert model.is_file() and not list(tmp_path.glob(".*"))  # no checkpoint, lock or temporary left
    described = invoke("info", model)
    assert described.exit_code == 0 and "starry_night" in described.output, described.output
    output = tmp_path / "out.jpg"
    painted = invoke("image", PHOTO, "--model", model, "-o", output, "--size", "40", "--device", "cpu")
    assert painted.exit_code == 0, painted.output
    with Image.open(output) as image:
        assert max(image.size) == 40
    both = invoke("image", PHOTO, "--model", model, "--style", STARRY, "-o", tmp_path / "x.jpg")
    assert both.exit_code == 2 and "not both" in both.output


class _StopsAt(Exception):
    pass


def test_a_training_stopped_by_ctrl_c_resumes_to_the_weights_of_one_never_stopped(tmp_path, photos):
    whole = train_model([Style(STARRY)], [photos], tmp_path / "whole.safetensors", SETTINGS, TrainingOptions(steps=6, **OPTIONS))
    assert whole.info.steps == 6

    def ctrl_c_at_step_3(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    resumed_path = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_model([Style(STARRY)], [photos], resumed_path, SETTINGS, TrainingOptions(steps=6, **OPTIONS), ctrl_c_at_step_3)
    assert not resumed_path.exists() and (tmp_path / ".resumed.safetensors.checkpoint").is_file()
    resumed = train_model([Style(STARRY)], [photos], resumed_path, SETTINGS, TrainingOptions(steps=6, **OPTIONS))
    assert resumed.resumed_from == 3
    a, b = weights(whole.path), weights(resumed_path)
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def test_a_training_killed_outright_resumes_from_its_last_checkpoint(tmp_path, photos):
    model = tmp_path / "killed.safetensors"
    script = (
        "import os, signal, sys\n"
        "import torch\n"
        "import pipeline.engine.training as t\n"
        f"torch.set_num_threads({torch.get_num_threads()})  # as here: bf16 kernels split work by thread count\n"
        "from pipeline.settings import Style, StyleSettings\n"
        "t.CHECKPOINT_EVERY_S = 0\n"
        "def kill(p):\n"
        "    if p.step == 4: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"t.train_model([Style({str(STARRY)!r})], [{str(photos)!r}], {str(model)!r}, StyleSettings(device='cpu'),"
        f" t.TrainingOptions(steps=6, **{OPTIONS!r}), kill)\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9 and (tmp_path / ".killed.safetensors.checkpoint").is_file()
    resumed = train_model([Style(STARRY)], [photos], model, SETTINGS, TrainingOptions(steps=6, **OPTIONS))
    assert resumed.resumed_from == 3 and resumed.info.steps == 6  # killed before step 4's checkpoint
    whole = train_model([Style(STARRY)], [photos], tmp_path / "whole.safetensors", SETTINGS, TrainingOptions(steps=6, **OPTIONS))
    a, b = weights(whole.path), weights(model)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_the_loss_falls_as_it_trains(photos, tmp_path, monkeypatch):
    seen = []
    train_model([Style(STARRY)], [photos], tmp_path / "m.safetensors", SETTINGS,
                TrainingOptions(steps=30, **{**OPTIONS, "batch_size": 1}), lambda p: seen.append(p.losses["total"]))
    assert sum(seen[-5:]) / 5 < 0.85 * sum(seen[:5]) / 5, seen  # measured: about 0.76 after 30 steps


def test_nothing_to_train_on_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures")
    result = invoke("train", "--style", STARRY, "--on", tmp_path, "-o", tmp_path / "m.safetensors", "--steps", "1")
    assert result.exit_code == 2 and "no photos or clips to train on" in result.output, result.output


def test_a_model_says_what_it_was_made_for_and_how_the_judge_found_it(tmp_path, photos):
    from pipeline.engine.model_file import describe_model, load_model

    model = tmp_path / "m.safetensors"
    train_model([Style(STARRY)], [photos], model, SETTINGS, TrainingOptions(steps=2, picture_edge=60, **OPTIONS))
    info = load_model(model)[1]
    assert info.picture_edge == 60 and info.training_size == 32
    # Two steps from the photo itself: hardly any style yet (near 1) and its content nearly intact (near 0).
    assert 0.5 < info.judge["style"] < 1.5 and 0 <= info.judge["content"] < 0.5, info.judge
    assert "32 px crops of pictures 60 px long" in describe_model(model)["training size"]


def test_an_unknown_design_is_one_line(tmp_path, photos):
    result = invoke("train", "--style", STARRY, "--on", photos, "-o", tmp_path / "m.safetensors", "--design", "huge", "--steps", "1")
    assert result.exit_code == 2 and "unknown design 'huge'" in result.output and "lean, johnson" in result.output, result.output
