"""`stylize video --model`: a trained model paints every frame on its own, with no flow but
the sampled checks; the clip keeps its frames, exact rate and sound, reports its flicker,
resumes where it stopped, and starts over when the model file changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clips import ODD_FPS, REPO, frame_count, pan_frames, stream_durations, write_clip
from common import STARRY, invoke, one_line_error
from pipeline.engine.engines import TrainedModel, model_dtype
from pipeline.engine.training import TrainingOptions, train_model
from pipeline.media.decode import probe_video, read_frames
from pipeline.settings import Style, StyleSettings, VideoSettings
from pipeline.video.chain import SAMPLE_EVERY
from pipeline.video.clip import open_clip
from pipeline.video.quality import drift
from pipeline.video.stylize import stylize_video

SETTINGS = StyleSettings(size=64, device="cpu")
FRAMES = 18  # more than SAMPLE_EVERY + 1, so that two transitions are measured


class Stop(Exception):
    pass


def stop_at(frame: int):
    def callback(progress):
        if progress.frame == frame:
            raise Stop

    return callback


def _trained(folder: Path, seed: int) -> Path:
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    for name in ("chelsea", "coffee"):
        Image.open(REPO / f"samples/photos/{name}.jpg").resize((64, 48)).save(photos / f"{name}.jpg")
    options = TrainingOptions(size=32, steps=2, batch_size=2, seed=seed, learning_rate=0.05)
    return train_model([Style(STARRY)], [photos], folder / f"model_{seed}.safetensors", StyleSettings(device="cpu"), options).path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _trained(tmp_path_factory.mktemp("model"), seed=1)


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", pan_frames(FRAMES))


def decoded(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(int)


def test_every_frame_is_the_models_at_the_exact_rate_with_the_sound(model, pan_clip, tmp_path):
    assert FRAMES > SAMPLE_EVERY + 1
    output = tmp_path / "out.mp4"
    painted = []
    result = stylize_video(pan_clip, [], output, SETTINGS, VideoSettings(passes=3), lambda p: painted.append(p.image), model)
    info = probe_video(output)
    assert frame_count(output) == result.frames_out == FRAMES and (info.width, info.height) == (64, 48)
    assert info.fps == ODD_FPS and result.fps_out == "1501/50" and not result.variable_frame_rate
    assert info.has_audio and result.audio_kept
    video_seconds, audio_seconds = stream_durations(output)
    assert abs(audio_seconds - video_seconds) <= 1 / float(ODD_FPS)
    assert result.flicker_ratio is not None and result.flicker_ratio_independent is not None
    assert result.photo_gaps == [] and result.passes == 1  # later passes are the chain's
    assert set(result.drift) == {"sharpness", "own_sharpness"}  # no painting's pixels in a model file: no distances
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    pictures = TrainedModel(model, SETTINGS).stylize(list(read_frames(pan_clip)))
    expected = np.stack([np.asarray(picture.image) for picture in pictures]).astype(int)
    assert np.abs(np.stack(painted) - expected).max() <= 1  # the model's own pictures (batches may round apart)
    assert np.abs(expected - decoded(pan_clip)).mean() > 5  # which are not the photos


def test_a_stopped_clip_resumes_after_its_finished_frames(model, pan_clip, tmp_path):
    output = tmp_path / "resumed.mp4"
    with pytest.raises(Stop):
        stylize_video(pan_clip, [], output, SETTINGS, callback=stop_at(5), model=model)
    work = tmp_path / ".resumed.mp4.work"
    assert json.loads((work / "state.json").read_text())["frames_done"] == 5  # written as the run stopped
    seen = []
    resumed = stylize_video(pan_clip, [], output, SETTINGS, callback=lambda p: seen.append(p.frame), model=model)
    assert seen == list(range(6, FRAMES + 1))  # only the frames not done
    assert resumed.resumed_from == 5 and resumed.frames_out == frame_count(output) == FRAMES
    straight = stylize_video(pan_clip, [], tmp_path / "straight.mp4", SETTINGS, model=model)
    assert np.abs(decoded(output) - decoded(straight.output)).mean() < 0.5


def test_a_changed_model_file_starts_the_frames_over(model, pan_clip, tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(model.read_bytes())
    output = tmp_path / "out.mp4"
    clip = open_clip(pan_clip, [], output, SETTINGS, model=path)
    work = clip.work(clip.segments[0])
    work.add(0, False, np.zeros((*clip.size, 3), np.uint8), None, None, 0.1)
    work.save_state()
    assert open_clip(pan_clip, [], output, SETTINGS, model=path).work(clip.segments[0]).frames_done == 1
    assert open_clip(pan_clip, [STARRY], output, SETTINGS).key != clip.key  # nor is it the optimiser's work
    path.write_bytes(_trained(tmp_path, seed=2).read_bytes())
    again = open_clip(pan_clip, [], output, SETTINGS, model=path)
    assert again.key != clip.key and again.work(again.segments[0]).frames_done == 0


def test_stylize_video_with_a_model(model, pan_clip, tmp_path):
    output = tmp_path / "out.mp4"
    result = invoke("video", pan_clip, "--model", model, "-o", output, "--size", "64", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"{FRAMES} frames at 1501/50 fps, audio kept" in result.output and "flicker ratio" in result.output
    assert frame_count(output) == FRAMES


@pytest.mark.parametrize("both", [True, False], ids=["both", "neither"])
def test_style_and_model_both_or_neither_is_one_line(model, pan_clip, tmp_path, both):
    extra = ["--style", STARRY, "--model", model] if both else []
    one_line_error(invoke("video", pan_clip, *extra, "-o", tmp_path / "out.mp4"), "--style", "--model", "not both or neither")
    assert list(tmp_path.iterdir()) == []


def test_drift_of_a_sample_skips_the_frames_not_scored():
    sampled = [[None, None, 1.0, 2.0] if k == 1 else None for k in range(40)] + [[None, None, 0.5, 2.0]]
    assert drift(sampled) == {"sharpness": -0.5, "own_sharpness": 0.0}
    assert drift([None] * 40) is None


def test_precision_picks_bf16_autocast_or_fp32():
    cpu = torch.device("cpu")
    assert model_dtype(cpu, "fp32") is None
    assert model_dtype(cpu, "bf16") is model_dtype(cpu, "mixed") is torch.bfloat16
    assert model_dtype(cpu, "auto") in (None, torch.bfloat16)
