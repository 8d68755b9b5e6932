"""Multi-pass (`video.passes`): later passes run over the frames in alternating direction,
each frame held to its neighbour in that direction; a pass resumes where it was killed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from clips import REPO, pan_frames, write_clip
from pipeline.media.decode import read_frames
from pipeline.settings import StyleSettings, VideoSettings
from pipeline.video.clip import open_clip
from pipeline.video.frames import pass_frames
from pipeline.video.stylize import stylize_video

STARRY = REPO / "samples/styles/starry_night.jpg"
TINY = StyleSettings(size=64, iterations=8, device="cpu", tolerance=0)


def decoded(path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(float)


def test_a_backward_pass_visits_the_frames_last_to_first_each_held_to_the_one_after(tmp_path):
    clip = open_clip(write_clip(tmp_path / "pan.mp4", pan_frames(8), audio=False), [STARRY], tmp_path / "out.mp4", TINY)
    frames = list(pass_frames(clip, 0, 8, backward=True, done=0, cuts=[5]))
    assert [frame.index for frame in frames] == [7, 6, 5, 4, 3, 2, 1, 0]
    linked = {frame.index: [reference.jump for reference in frame.references] for frame in frames}
    assert linked == {7: [], 6: [-1], 5: [-1], 4: [], 3: [-1], 2: [-1], 1: [-1], 0: [-1]}  # no link across the cut at 5
    # Frame 2 from frame 3: the camera pans right, so what frame 2 shows lies 2 px further left in frame 3.
    reference = frames[5].references[0]
    assert float(reference.backward[0, 0][reference.mask[0, 0] > 0].median()) == pytest.approx(-2.0, abs=0.5)
    resumed = list(pass_frames(clip, 0, 8, backward=True, done=3, cuts=[]))
    assert [frame.index for frame in resumed] == [4, 3, 2, 1, 0] and resumed[0].references[0].jump == -1
    forward = list(pass_frames(clip, 0, 8, backward=False, done=0, cuts=[]))
    assert [frame.index for frame in forward] == list(range(8)) and forward[1].references[0].jump == 1


def test_later_passes_repaint_every_frame_and_measure_the_result(tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", pan_frames(8), audio=True)
    seen = []
    outputs = {}
    for passes in (1, 3):
        video = VideoSettings(frame_iterations=4, photo_checks=1, passes=passes, crf=0)
        result = stylize_video(clip, [STARRY], tmp_path / f"p{passes}.mp4", TINY, video, callback=lambda p: seen.append((p.pass_number, p.frame)))
        assert result.frames_out == 8 and result.audio_kept and result.as_report()["passes"] == passes
        assert result.flicker_ratio is not None and result.photo_gaps and set(result.drift) == {"style", "content", "sharpness", "own_sharpness"}
        outputs[passes] = decoded(result.output)
    assert [frame for pass_number, frame in seen if pass_number == 2] == list(range(1, 9))
    assert [pass_number for pass_number, _ in seen].count(3) == 8
    # Every frame changed, the first one too (it was repainted by the backward pass).
    assert all(np.abs(outputs[3][k] - outputs[1][k]).mean() > 1 for k in range(8))


@pytest.mark.slow
def test_sigkill_in_a_later_pass_resumes_to_the_same_video(tmp_path):
    clip = write_clip(tmp_path / "pan.mp4", pan_frames(10), audio=False)
    common = [sys.executable, str(REPO / "cli.py"), "video", str(clip), "--style", str(STARRY), "--size", "64", "--iterations", "8",
              "--frame-iterations", "4", "--passes", "3", "--photo-checks", "0", "--device", "cpu", "--quiet"]
    killed = tmp_path / "killed.mp4"
    process = subprocess.Popen([*common, "-o", str(killed)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / ".killed.mp4.work/state.json"
    deadline = time.time() + 180

    def in_second_pass() -> bool:
        try:
            progress = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        return progress["passes_done"] == 1 and progress["pass_frames"] >= 4

    while time.time() < deadline and not in_second_pass():
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not killed.exists() and json.loads(state.read_text())["passes_done"] == 1
    subprocess.run([*common, "-o", str(killed)], cwd=REPO, check=True)
    subprocess.run([*common, "-o", str(tmp_path / "straight.mp4")], cwd=REPO, check=True)
    assert np.array_equal(decoded(killed), decoded(tmp_path / "straight.mp4"))
