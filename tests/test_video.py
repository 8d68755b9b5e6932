"""Video: frame count, rate, duration and sound survive; temporal stability; scene cuts; resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from pipeline.errors import InputError
from clips import frame_count, frame_times_of, stream_durations
from pipeline.media import encode
from pipeline.media.decode import probe_video, read_frames
from pipeline.media.files import remove_partials_of
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.video import join
from pipeline.video.clip import open_clip
from pipeline.video.stylize import stylize_video

from clips import ODD_FPS, REPO, pan_frames, write_clip, write_gif, write_two_video_streams, write_vfr_clip

STARRY = REPO / "samples/styles/starry_night.jpg"
TINY = StyleSettings(size=64, iterations=8, device="cpu", tolerance=0)
QUICK = VideoSettings(frame_iterations=4)
# For what is not about pictures: one step per frame at 32 px.
GLANCE = StyleSettings(size=32, iterations=1, device="cpu", tolerance=0)
ONE_STEP = VideoSettings(frame_iterations=1, photo_checks=0)
VFR_SLOTS = [0, 4, 8, 12, 13, 14, 15, 16, 17, 20, 21, 22]  # twentieths of a second: 0, .2, .4, .6, .65, .7, ...


@pytest.fixture(scope="module")
def pan_clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "pan.mp4", pan_frames(8))


def decoded(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(int)


def test_clip_keeps_frames_rate_duration_and_audio(pan_clip, tmp_path):
    output = tmp_path / "out.mp4"
    result = stylize_video(pan_clip, [STARRY], output, TINY, QUICK)
    info = probe_video(output)
    assert frame_count(output) == result.frames_out == result.frames_in == 8
    assert info.fps == ODD_FPS and result.fps_out == "1501/50" and not result.variable_frame_rate
    assert (info.width, info.height) == (64, 48)
    video_seconds, audio_seconds = stream_durations(output)
    period = 1 / float(ODD_FPS)
    assert abs(video_seconds - 8 * period) <= period
    assert info.has_audio and result.audio_kept
    assert abs(audio_seconds - video_seconds) <= period
    assert result.warping_error_input is not None and result.warping_error_output is not None
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # work folder and temporaries gone
    frames = decoded(output)
    assert np.abs(frames - decoded(pan_clip)).mean() > 20  # it was really restyled


def test_temporal_loss_flickers_far_less_than_independent_frames(pan_clip, tmp_path):
    steady = stylize_video(pan_clip, [STARRY], tmp_path / "steady.mp4", TINY, QUICK)
    independent = stylize_video(pan_clip, [STARRY], tmp_path / "independent.mp4", TINY, QUICK.model_copy(update={"temporal": False}))
    assert steady.flicker_ratio * 3 < independent.flicker_ratio, (steady.flicker_ratio, independent.flicker_ratio)


def test_a_hard_cut_starts_a_new_shot(tmp_path):
    clip = write_clip(tmp_path / "cut.mp4", pan_frames(4, photo="astronaut") + pan_frames(4, photo="coffee"), audio=False)
    result = stylize_video(clip, [STARRY], tmp_path / "out.mp4", TINY, QUICK)
    assert result.scene_cuts == [4]
    assert result.audio_kept is False


class Stop(Exception):
    pass


def stop_at(frame: int):
    """A progress callback that stops the clip once `frame` frames are done, as Ctrl-C would."""

    def callback(progress):
        if progress.frame == frame:
            raise Stop

    return callback


def test_resume_after_an_interruption_matches_an_uninterrupted_run(pan_clip, tmp_path):
    interrupted = tmp_path / "resumed.mp4"
    with pytest.raises(Stop):
        stylize_video(pan_clip, [STARRY], interrupted, TINY, QUICK, callback=stop_at(4))
    assert not interrupted.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".resumed.mp4.work"]  # no partial files
    work = tmp_path / ".resumed.mp4.work"
    assert json.loads((work / "state.json").read_text())["frames_done"] == 4
    resumed = stylize_video(pan_clip, [STARRY], interrupted, TINY, QUICK)
    assert resumed.resumed_from == 4 and resumed.frames_out == 8
    straight = stylize_video(pan_clip, [STARRY], tmp_path / "straight.mp4", TINY, QUICK)
    assert np.array_equal(decoded(interrupted), decoded(straight.output))
    assert resumed.warping_error_output == pytest.approx(straight.warping_error_output)


def test_animated_gif_and_silent_clip(tmp_path):
    gif = write_gif(tmp_path / "loop.gif", pan_frames(6), milliseconds=100)
    result = stylize_video(gif, [STARRY], tmp_path / "loop.mp4", TINY, QUICK)
    assert frame_count(tmp_path / "loop.mp4") == 6
    assert probe_video(tmp_path / "loop.mp4").fps == Fraction(10)
    assert result.audio_kept is False


def test_truncated_clip_uses_the_frames_before_the_damage(tmp_path):
    whole = write_clip(tmp_path / "whole.mp4", pan_frames(60), audio=False, faststart=True)  # index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8)])
    result = stylize_video(cut, [STARRY], tmp_path / "out.mp4", TINY, QUICK.model_copy(update={"frame_iterations": 1}))
    assert 0 < result.frames_out < 60
    assert frame_count(tmp_path / "out.mp4") == result.frames_out


def test_truncated_clip_without_its_index_fails_with_a_reason(tmp_path):
    whole = write_clip(tmp_path / "whole.mp4", pan_frames(30), audio=False)  # index at the end, now cut off
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(InputError, match="cut.mp4"):
        stylize_video(cut, [STARRY], tmp_path / "out.mp4", TINY, QUICK)
    assert not (tmp_path / "out.mp4").exists()


def _manifest(tmp_path: Path, folder: Path) -> Path:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 64, iterations: 8, device: cpu, tolerance: 0}}\n"
                        f"jobs:\n  - name: clips\n    input: {folder}\n    style: {STARRY}\n    video: {{frame_iterations: 4}}\n")
    return manifest


def test_manifest_runs_clips_and_reports_them(tmp_path, pan_clip):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "pan.mp4").write_bytes(pan_clip.read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    result = CliRunner().invoke(cli.app, ["run", str(_manifest(tmp_path, folder))])
    assert result.exit_code == 1, result.output
    items = {Path(i["input"]).name: i for i in json.loads((tmp_path / "out/report.json").read_text())["items"]}
    assert "broken.mp4" in items["broken.mp4"]["error"] and items["broken.mp4"]["status"] == "failed"
    video = items["pan.mp4"]["video"]
    assert items["pan.mp4"]["status"] == "done" and items["pan.mp4"]["output"].endswith("pan__starry_night.mp4")
    for field in ("frames_in", "frames_out", "fps_in", "fps_out", "duration_in", "duration_out", "audio_kept",
                  "seconds_per_frame", "warping_error_output", "warping_error_input", "flicker_ratio"):
        assert field in video, field
    assert video["frames_out"] == 8 and video["audio_kept"] is True


def test_sigkill_mid_clip_then_rerun_resumes(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    write_clip(folder / "long.mp4", pan_frames(24))
    manifest = _manifest(tmp_path, folder)
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "run", str(manifest)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "out/clips/.long__starry_night.mp4.work/state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["frames_done"] >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "out/clips/long__starry_night.mp4").exists()
    result = CliRunner().invoke(cli.app, ["run", str(manifest)])
    assert result.exit_code == 0, result.output
    video = json.loads((tmp_path / "out/report.json").read_text())["items"][0]["video"]
    assert video["resumed_from"] >= 3 and video["frames_out"] == 24
    assert frame_count(tmp_path / "out/clips/long__starry_night.mp4") == 24


def test_a_clip_started_by_stylize_video_resumes_in_a_manifest_run(tmp_path, pan_clip):
    """One work-key recipe for every surface: the manifest run picks up the frames that
    `stylize video` finished into the same output's work folder."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "pan.mp4").write_bytes(pan_clip.read_bytes())
    output = tmp_path / "out/clips/pan__starry_night.mp4"
    with pytest.raises(Stop):
        stylize_video(folder / "pan.mp4", [STARRY], output, TINY, QUICK, callback=stop_at(3))
    result = CliRunner().invoke(cli.app, ["run", str(_manifest(tmp_path, folder))])
    assert result.exit_code == 0, result.output
    video = json.loads((tmp_path / "out/report.json").read_text())["items"][0]["video"]
    assert video["resumed_from"] == 3 and video["frames_out"] == 8


def test_new_weights_do_not_resume_old_frames(pan_clip, tmp_path):
    """The work key names the VGG weights as an item's key does: replacing the weights file under
    the same path starts the frames over."""
    torch = pytest.importorskip("torch")
    weights = tmp_path / "vgg.pth"
    torch.save({"conv1_1": torch.zeros(2)}, weights)
    settings = GLANCE.model_copy(update={"weights": str(weights)})
    output = tmp_path / "out.mp4"
    clip = open_clip(pan_clip, [STARRY], output, settings, ONE_STEP)
    work = clip.work(clip.segments[0])
    work.add(0, False, np.zeros((clip.size[0], clip.size[1], 3), np.uint8), None, [0.0, 0.0, 1.0, 1.0], 0.1)
    work.save_state()
    assert open_clip(pan_clip, [STARRY], output, settings, ONE_STEP).work(clip.segments[0]).frames_done == 1
    torch.save({"conv1_1": torch.zeros(3)}, weights)  # other weights at the same path (and, as for real VGG19 files, the same size)
    again = open_clip(pan_clip, [STARRY], output, settings, ONE_STEP)
    assert again.key != clip.key
    assert again.work(again.segments[0]).frames_done == 0


def test_the_main_video_stream_is_stylized_not_the_first(tmp_path):
    """A 16x16 side stream first, the 64x48 picture ffmpeg plays second: the output is the picture's."""
    clip = write_two_video_streams(tmp_path / "two.mkv", pan_frames(4, size=(16, 16), photo="coffee"), pan_frames(6))
    output = tmp_path / "out.mp4"
    result = stylize_video(clip, [STARRY], output, GLANCE.model_copy(update={"size": 64}), ONE_STEP)
    info = probe_video(output)
    assert (info.width, info.height) == (64, 48) and result.frames_out == frame_count(output) == 6
    assert result.audio_kept and not result.variable_frame_rate
    video, audio = stream_durations(output)
    assert video == pytest.approx(6 / 25, abs=0.04) and audio == pytest.approx(video, abs=0.04)


def test_every_temporary_of_the_encode_is_named_after_the_output(pan_clip, tmp_path, monkeypatch):
    """A SIGKILL while the clip is encoded leaves its temporaries behind; the next run's
    remove_partials_of(output) must find every one of them (none named after another temporary)."""
    made = []

    def recording(path):
        made.append(original(path))
        return made[-1]

    original = join.partial_path
    for module in (join, encode):
        monkeypatch.setattr(module, "partial_path", recording)
    output = tmp_path / "out.mp4"
    stylize_video(pan_clip, [STARRY], output, GLANCE.model_copy(update={"size": 64}), ONE_STEP)
    assert len(made) >= 3  # the silent picture, ffmpeg's file for it, the file with the sound
    for path in made:  # as the kill left them
        path.write_bytes(b"")
    remove_partials_of(output)
    assert sorted(tmp_path.iterdir()) == [output]


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory) -> Path:
    return write_vfr_clip(tmp_path_factory.mktemp("vfr") / "vfr.mp4", pan_frames(len(VFR_SLOTS), size=(32, 24)), VFR_SLOTS)


def test_a_variable_frame_rate_clip_keeps_its_timestamps_and_sound(vfr_clip, tmp_path):
    source_times, source_end = frame_times_of(vfr_clip)
    output = tmp_path / "out.mp4"
    result = stylize_video(vfr_clip, [STARRY], output, GLANCE, ONE_STEP)
    assert result.variable_frame_rate and result.frames_out == len(VFR_SLOTS) and result.audio_kept
    times, end = frame_times_of(output)
    period = 1 / 20  # the shortest frame
    assert times == pytest.approx(source_times, abs=1e-3)  # exactly, bar rounding; a frame would be 50 ms
    assert end == pytest.approx(source_end, abs=period) and result.duration_out == pytest.approx(source_end, abs=1e-3)
    _, audio = stream_durations(output)
    assert audio == pytest.approx(end, abs=period)  # in sync to the end
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_trimmed_variable_frame_rate_clip_starts_at_its_first_frame(vfr_clip, tmp_path):
    """--start 0.5 --end 0.9 at the average 240/23 fps: the frames at 0.6 ... 0.8 s, shown as long
    as in the source (the last until 0.85 s), with the sound from 0.6 s."""
    output = tmp_path / "cut.mp4"
    result = stylize_video(vfr_clip, [STARRY], output, GLANCE, ONE_STEP.model_copy(update={"start": 0.5, "end": 0.9}))
    times, end = frame_times_of(output)
    assert result.frames_out == 5 and times == pytest.approx([0, 0.05, 0.1, 0.15, 0.2], abs=1e-3)
    assert end == pytest.approx(0.25, abs=1e-3)
    _, audio = stream_durations(output)
    assert audio == pytest.approx(0.25, abs=0.05)


def test_a_resumed_variable_frame_rate_clip_keeps_its_timestamps(vfr_clip, tmp_path):
    output = tmp_path / "resumed.mp4"
    with pytest.raises(Stop):
        stylize_video(vfr_clip, [STARRY], output, GLANCE, ONE_STEP, callback=stop_at(5))
    result = stylize_video(vfr_clip, [STARRY], output, GLANCE, ONE_STEP)
    assert result.resumed_from == 5 and result.variable_frame_rate
    assert frame_times_of(output)[0] == pytest.approx(frame_times_of(vfr_clip)[0], abs=1e-3)

