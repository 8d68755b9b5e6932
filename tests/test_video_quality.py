"""How a clip holds up: honest flicker, frames against photo-path stylizations, drift and
flags in every report; long-term consistency bringing occluded regions back; its resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from clips import REPO, pan_frames, write_clip
from pipeline.batch.report_html import render_report
from pipeline.media.decode import read_frames
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.video.chain import warm_start
from pipeline.video.frames import Frame, Reference
from pipeline.video.quality import MAX_PHOTO_GAP, drift, flags
from pipeline.video.stylize import stylize_video

STARRY = REPO / "samples/styles/starry_night.jpg"
TINY = StyleSettings(size=64, iterations=8, device="cpu", tolerance=0)
QUICK = VideoSettings(frame_iterations=4, photo_checks=0)
BAR, SPEED = 12, 8  # the occluder's width and how far it moves a frame, in pixels


def decoded(path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(float)


def test_every_clip_reports_independent_flicker_photo_gaps_drift_and_flags(tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", pan_frames(8), audio=False)
    result = stylize_video(clip, [STARRY], tmp_path / "out.mp4", TINY, QUICK.model_copy(update={"photo_checks": 2}))
    assert result.flicker_ratio_independent is not None and result.flicker_ratio_independent > 0
    assert [gap["frame"] for gap in result.photo_gaps] == [4, 7]  # evenly spread, the last included
    assert all(gap["style"] > 0 and gap["content"] > 0 for gap in result.photo_gaps)
    assert set(result.drift) == {"style", "content", "sharpness", "own_sharpness"}
    assert result.flags == flags(result.flicker_ratio_independent, result.photo_gaps, result.drift)
    report = result.as_report()
    page = render_report({"manifest": "m.yaml", "started": "now", "finished": "now", "totals": {"done": 1}, "output_dir": str(tmp_path),
                          "items": [{"job": "clips", "input": str(clip), "style": "starry", "output": str(result.output),
                                     "status": "done", "seconds": 1.0, "video": report}]}, lambda path: path)
    assert f"independent flow: {result.flicker_ratio_independent:.2f}" in page
    assert f"frame 7: style ×{result.photo_gaps[-1]['style']:.2f}" in page and "sharpness ×" in page
    assert f"longest shot: style {result.drift['style']:+.0%}" in page and "sharpness against the input" in page and "own sharpness" in page


def test_flags_name_each_bound_broken():
    gaps = [{"frame": 40, "style": MAX_PHOTO_GAP + 0.2, "content": 1.0, "sharpness": 1.0},
            {"frame": 80, "style": 1.0, "content": 1.0, "sharpness": 0.8}]
    found = flags(2.0, gaps, {"style": 0.0, "content": 0.25, "sharpness": -0.3, "own_sharpness": -0.2})
    assert len(found) == 5
    assert "independent flicker ratio 2.00" in found[0] and "frame 40" in found[1] and "frame 80 is 0.80x as sharp" in found[2]
    assert "content drifts +25%" in found[3] and "sharpness drifts -30% against the input and -20% in itself" in found[4]
    just_past = flags(1.0, [{"frame": 50, "style": 1.0, "content": 1.104, "sharpness": 1.0}], {})
    assert just_past == ["frame 50 is 1.104x as far from its content as a photo-path stylization (> 1.1)"]
    within = [{"frame": 3, "style": 1.0, "content": 1.05, "sharpness": 0.95}]
    assert flags(1.0, within, {"style": 0.05, "content": 0.0, "sharpness": 0.0, "own_sharpness": 0.0}) == []
    closer_and_sharper = {"style": -0.3, "content": -0.2, "sharpness": 0.4, "own_sharpness": 0.3}  # frames that end better than they began
    assert flags(1.0, [], closer_and_sharper) == []


def test_blurrier_means_blurrier_in_itself_as_well_as_against_the_input():
    """A sharper input under an output that keeps its sharpness lowers their ratio; the output is no blurrier."""
    input_sharpens = {"style": 0.0, "content": 0.0, "sharpness": -0.15, "own_sharpness": 0.0}
    assert flags(1.0, [], input_sharpens) == []
    input_softens_and_output_follows = {"style": 0.0, "content": 0.0, "sharpness": 0.0, "own_sharpness": -0.3}
    assert flags(1.0, [], input_softens_and_output_follows) == []
    output_smears = {"style": 0.0, "content": 0.0, "sharpness": -0.2, "own_sharpness": -0.2}
    (found,) = flags(1.0, [], output_smears)
    assert "sharpness drifts -20% against the input and -20% in itself" in found
    kept_no_own_sharpness = {"style": 0.0, "content": 0.0, "sharpness": -0.2}  # a run resumed from an older state
    assert len(flags(1.0, [], kept_no_own_sharpness)) == 1


def test_drift_compares_the_first_frames_with_the_last():
    steady = [[1.0, 2.0, 3.0, 4.0]] * 20
    assert drift(steady) == {"style": 0.0, "content": 0.0, "sharpness": 0.0, "own_sharpness": 0.0}
    washing_out = [[1.0 + i / 10, 2.0, 3.0, 4.0] for i in range(20)]
    assert drift(washing_out)["style"] > 0.5
    assert drift(steady[:7]) is None  # too short to say


def test_drift_of_a_run_resumed_from_a_state_that_kept_three_measures():
    resumed = [[1.0, 2.0, 3.0]] * 10 + [[1.0, 2.0, 1.5, 4.0]] * 10
    assert drift(resumed) == {"style": 0.0, "content": 0.0, "sharpness": -0.5}


def test_drift_stays_within_a_shot():
    """Across a cut the footage changes, not the chain: a new scene scoring differently is no drift."""
    two_scenes = [[1.0, 2.0, 3.0, 4.0]] * 30 + [[2.0, 1.0, 1.0, 1.0]] * 12
    assert drift(two_scenes)["style"] > 0.5
    assert drift(two_scenes, cuts=[30]) == {"style": 0.0, "content": 0.0, "sharpness": 0.0, "own_sharpness": 0.0}  # the longest shot


def occluded_scene(count: int) -> list[np.ndarray]:
    """A still, textured background with a flat grey bar crossing it left to right."""
    background = pan_frames(1, shift=0)[0]
    frames = []
    for index in range(count):
        frame = background.copy()
        left = -BAR + index * SPEED
        frame[:, max(0, left) : max(0, left + BAR)] = 128
        frames.append(frame)
    return frames


def test_long_term_consistency_brings_back_what_an_occluder_hid(tmp_path):
    clip = write_clip(tmp_path / "occluder.mp4", occluded_scene(12), audio=False)
    columns = slice(24, 40)  # clear in frame 3, hidden by the bar in frames 4 to 6, clear again from frame 7
    settings = TINY.model_copy(update={"iterations": 30})
    changes = {}
    for name, long_term in {"short": (), "long": (4, 8)}.items():
        video = QUICK.model_copy(update={"long_term": long_term, "scene_cut": 0, "frame_iterations": 6, "crf": 0})
        frames = decoded(stylize_video(clip, [STARRY], tmp_path / f"{name}.mp4", settings, video).output)
        changes[name] = np.mean([np.abs(frames[k][:, columns] - frames[3][:, columns]).mean() for k in range(7, 12)])
    assert changes["long"] < 0.9 * changes["short"], changes
    assert changes["short"] - changes["long"] > 3, changes  # grey levels: more than codec noise


@pytest.mark.slow
def test_sigkill_with_long_term_consistency_resumes_to_the_same_video(tmp_path):
    clip = write_clip(tmp_path / "occluder.mp4", occluded_scene(14), audio=False)
    common = [sys.executable, str(REPO / "cli.py"), "video", str(clip), "--style", str(STARRY), "--size", "64", "--iterations", "8",
              "--frame-iterations", "4", "--long-term", "3", "--long-term", "6", "--photo-checks", "0", "--device", "cpu", "--quiet"]
    killed = tmp_path / "killed.mp4"
    process = subprocess.Popen([*common, "-o", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / ".killed.mp4.work/state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["frames_done"] >= 8):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed.exists()
    subprocess.run([*common, "-o", str(killed)], cwd=REPO, check=True)
    subprocess.run([*common, "-o", str(tmp_path / "straight.mp4")], cwd=REPO, check=True)
    assert np.array_equal(decoded(killed), decoded(tmp_path / "straight.mp4"))


def test_untrusted_pixels_start_from_the_warped_output_unless_it_reads_from_beyond_the_frame():
    flow = torch.zeros(1, 2, 8, 8)
    flow[0, 0, :, 6:] = 4  # the last two columns come into view: their flow points past the right edge
    trusted = torch.zeros(1, 1, 8, 8)
    trusted[..., :4] = 1  # the left half is reliable; columns 4-5 are disoccluded but inside the frame
    frame = Frame(5, np.zeros((8, 8, 3), np.uint8), references=[Reference(1, flow, trusted)])
    previous_output = np.full((8, 8, 3), 200, np.uint8)
    start, target, covered = warm_start(frame, {4: previous_output})
    assert torch.allclose(start[..., :6], torch.tensor(200 / 255))  # painted, not the black photo
    assert float(start[..., 6:].abs().max()) == 0  # beyond the edge the warp only smears: the photo
    assert torch.equal(covered, trusted) and float(target[..., 4:].abs().max()) == 0  # held only where trusted
