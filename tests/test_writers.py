"""One writer per output, whichever command writes it: a second is refused at once naming
the first, cleanup spares what live writers are writing, a work folder emptied under a
writer starts again, and a run whose folder vanishes stops instead of reporting ghosts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from common import CLIP, PHOTO, STARRY, invoke
from pipeline.batch.events import RunEvents
from pipeline.batch.runner import run_manifest
from pipeline.errors import EnvironmentProblem
from pipeline.media.lock import lock_path, remove_stale_files
from pipeline.video.work import WorkFolder

CLIP_OPTIONS = ("--size", "32", "--iterations", "0", "--frame-iterations", "0", "--max-frames", "4",
                "--photo-checks", "0", "--device", "cpu")


def hold(output: Path, pid: int | None = None) -> Path:
    """A lock on `output` as a live writer (this test process, unless `pid`) would leave it."""
    lock = lock_path(output)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid or os.getpid(), "host": socket.gethostname(), "started": "now", "token": "x"}))
    return lock


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def photo_manifest(tmp_path: Path, count: int = 3, extra_job: str = "") -> Path:
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for number in range(count):
        Image.open(PHOTO).resize((48, 32)).save(photos / f"p{number}.jpg")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 0, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    style: {STARRY}\n{extra_job}")
    return manifest


def clip_manifest(tmp_path: Path) -> tuple[Path, Path]:
    manifest = tmp_path / "clips.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 0, device: cpu}}\n"
                        f"jobs:\n  - name: c\n    input: {CLIP}\n    style: {STARRY}\n"
                        f"    video: {{frame_iterations: 0, max_frames: 4, photo_checks: 0}}\n")
    return manifest, tmp_path / "out" / "c" / f"{CLIP.stem}__starry_night.mp4"


def test_an_image_or_video_being_written_is_refused_to_a_second_writer_naming_it(tmp_path):
    for command, source, name in (("image", PHOTO, "x.jpg"), ("video", CLIP, "x.mp4")):
        output = tmp_path / name
        hold(output)
        extra = CLIP_OPTIONS if command == "video" else ("--size", "32", "--iterations", "0")
        result = invoke(command, source, "--style", STARRY, "-o", output, *extra)
        assert result.exit_code == 3, result.output
        assert f"pid {os.getpid()}" in result.output and "in use by another stylize" in result.output
        assert not output.exists()


def test_an_output_a_live_run_claims_is_refused_to_stylize_video_naming_the_run(tmp_path):
    output = tmp_path / "out" / "c" / "clip.mp4"
    output.parent.mkdir(parents=True)
    (tmp_path / "out" / ".stylize.lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": "now", "manifest": "night.yaml", "outputs": ["c/clip.mp4"]}))
    result = invoke("video", CLIP, "--style", STARRY, "-o", output, *CLIP_OPTIONS)
    assert result.exit_code == 3 and "being written by a run of night.yaml" in result.output, result.output
    assert not any(output.parent.iterdir())  # nothing made, its own lock given back
    other = tmp_path / "out" / "c" / "other.jpg"  # an output the run does not write is free
    assert invoke("image", PHOTO, "--style", STARRY, "-o", other, "--size", "32", "--iterations", "0").exit_code == 0


def test_a_run_fails_only_the_item_another_writer_holds_and_a_rerun_does_it(tmp_path):
    manifest = photo_manifest(tmp_path)
    held = tmp_path / "out" / "a" / "p1__starry_night.jpg"
    lock = hold(held)
    first = invoke("run", manifest)
    assert first.exit_code == 1, first.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {Path(r["output"]).name: r["status"] for r in report["items"]}
    assert status == {"p0__starry_night.jpg": "done", "p1__starry_night.jpg": "failed", "p2__starry_night.jpg": "done"}
    assert "in use by another stylize" in next(r["error"] for r in report["items"] if r["status"] == "failed")
    assert lock.exists() and not held.exists()  # the other writer's lock and output are its own
    lock.unlink()
    again = invoke("run", manifest)
    assert again.exit_code == 0 and held.is_file()
    assert not list((tmp_path / "out").rglob("*.lock"))


def test_stylize_video_then_run_and_run_then_stylize_video_leave_one_good_clip(tmp_path):
    manifest, output = clip_manifest(tmp_path)
    for order in (("video", "run"), ("run", "video")):
        for command in order:
            result = (invoke("run", manifest) if command == "run"
                      else invoke("video", CLIP, "--style", STARRY, "-o", output, *CLIP_OPTIONS))
            assert result.exit_code == 0, (order, command, result.output)
        assert output.is_file() and output.stat().st_size > 0
        leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(".") and p.name != ".thumbs"]
        assert leftovers == [], leftovers  # no work folder, temporary or lock stuck beside it
        assert invoke("run", manifest).exit_code == 0
        output.unlink()


def test_cleanup_removes_only_what_dead_writers_left(tmp_path):
    folder = tmp_path / "out"
    live, dead = folder / "live.mp4", folder / "dead.jpg"
    hold(live)
    stale_lock = hold(dead, pid=dead_pid())
    temporaries = {
        "live": [folder / ".live.abcd1234.partial.mp4", folder / ".live.mp4.work" / ".frame_000001.abcd1234.partial.png",
                 folder / ".live.mp4.abcd1234.partial.json"],
        "dead": [folder / ".dead.abcd1234.partial.jpg", folder / ".dead.jpg.abcd1234.partial.json"],
    }
    for path in sum(temporaries.values(), []):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    remove_stale_files(folder)
    assert all(path.exists() for path in temporaries["live"]) and lock_path(live).exists()
    assert not any(path.exists() for path in temporaries["dead"]) and not stale_lock.exists()


def test_a_work_folder_emptied_under_its_state_starts_again(tmp_path):
    work = WorkFolder(tmp_path / ".x.mp4.work", "key")
    work.add(0, False, __import__("numpy").zeros((4, 4, 3), "uint8"), None, [0, 0, 0, 0], 0.1)
    work.save_state()  # frames are written behind; the state counts them once written
    assert WorkFolder(tmp_path / ".x.mp4.work", "key").frames_done == 1
    (tmp_path / ".x.mp4.work" / "frame_000000.png").unlink()  # another writer's cleanup, a user, a disk tool
    assert WorkFolder(tmp_path / ".x.mp4.work", "key").frames_done == 0


class _RemovesTheFolderLock(RunEvents):
    def __init__(self, folder: Path):
        self.folder = folder

    def item_finished(self, record) -> None:
        (self.folder / ".stylize.lock").unlink(missing_ok=True)


def test_a_run_whose_folder_lock_vanishes_stops_and_writes_nothing_more(tmp_path):
    manifest = photo_manifest(tmp_path)
    with pytest.raises(EnvironmentProblem, match="lock was removed during the run"):
        run_manifest(manifest, _RemovesTheFolderLock(tmp_path / "out"))
    outputs = sorted(p.name for p in (tmp_path / "out" / "a").glob("*.jpg"))
    assert outputs == ["p0__starry_night.jpg"]  # stopped after the item that noticed
    assert not list((tmp_path / "out").rglob(".*.lock"))
    result = invoke("run", manifest)
    assert result.exit_code == 0 and len(list((tmp_path / "out" / "a").glob("*.jpg"))) == 3
