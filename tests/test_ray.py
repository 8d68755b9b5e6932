"""The Ray backend on a local CPU-only cluster started here: same outputs and report as a
local run, resume across backends, a killed worker's item retried, a corrupt input not
retried, a long clip split into segments with invisible seams, and Ray missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clips import REPO, pan_frames, write_clip
from clips import frame_count, stream_durations
from pipeline.batch.events import RunEvents
from pipeline.batch.manifest import load_manifest
from pipeline.batch.plan import prepare
from pipeline.batch.runner import run_planned
from pipeline.media.decode import probe_video

ray = pytest.importorskip("ray", reason="the Ray backend needs Ray: pip install -e '.[ray]'")

STARRY = REPO / "samples/styles/starry_night.jpg"
TINY = "{size: 48, iterations: 5, device: cpu, tolerance: 0}"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module: 2 CPUs, so one worker by default."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}})
    yield
    ray.shutdown()


def photos(folder: Path, names=("chelsea", "coffee")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        with Image.open(REPO / f"samples/photos/{name}.jpg") as image:
            image.resize((48, 32)).save(folder / f"{name}.jpg")
    return folder


def manifest(tmp_path: Path, inputs: Path, name: str = "m.yaml", settings: str = TINY, video: str = "{frame_iterations: 3}",
             extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(f"output_dir: out\n{extra}defaults: {settings}\n"
                    f"jobs:\n  - name: a\n    input: {inputs}\n    style: {STARRY}\n    video: {video}\n")
    return path


def run(path: Path, backend: str, events: RunEvents | None = None, **options):
    loaded = load_manifest(path)
    return run_planned(loaded, prepare(loaded), events, backend=backend, **options)


def summary(report) -> dict[str, tuple[str, int]]:
    return {Path(r.output).name: (r.status, r.attempts) for r in report.items}


def sidecar_keys(out: Path) -> dict[str, str]:
    return {p.name: json.loads(p.read_text())["key"] for p in out.rglob("*.json") if p.name != "report.json"}


class Recorder(RunEvents):
    def __init__(self):
        self.started, self.finished, self.notes, self.frames = [], [], [], []

    def item_started(self, position, total, item):
        self.started.append((position, total, item.content.name))

    def item_finished(self, record):
        self.finished.append(record.status)

    def note(self, message):
        self.notes.append(message)

    def video_progress(self, progress):
        self.frames.append(progress.frame)


def test_same_outputs_and_report_as_local_and_a_local_run_finishes_on_ray(tmp_path):
    inputs = photos(tmp_path / "in")
    write_clip(inputs / "pan.mp4", pan_frames(6))
    local = run(manifest(tmp_path / "local", inputs), "local")
    events = Recorder()
    distributed = run(manifest(tmp_path / "ray", inputs, extra="backend: ray\n"), None, events)  # backend from the manifest
    assert summary(distributed) == summary(local) == {
        "chelsea__starry_night.jpg": ("done", 1), "coffee__starry_night.jpg": ("done", 1), "pan__starry_night.mp4": ("done", 1)}
    assert sidecar_keys(tmp_path / "ray/out") == sidecar_keys(tmp_path / "local/out") and len(sidecar_keys(tmp_path / "ray/out")) == 3
    on_disk = json.loads((tmp_path / "ray/out/report.json").read_text())
    assert on_disk["totals"]["done"] == 3 and on_disk["finished"]
    assert sorted(p for p, _, _ in events.started) == [1, 2, 3] and events.finished == ["done"] * 3
    clip = next(r for r in distributed.items if r.video)
    assert clip.video["frames_out"] == 6 and clip.video["audio_kept"] is True
    assert not (tmp_path / "ray/out/.stylize.lock").exists()
    assert all(item["thumbnails"] for item in on_disk["items"])  # made on the driver, whichever backend ran the item
    assert not [p for p in (tmp_path / "ray/out").rglob(".*") if p.name != ".thumbs"]  # no partial files, no work folders

    # Started here, finished there: a local run of one photo, then the whole manifest on Ray.
    shared = tmp_path / "shared"
    half = run(manifest(shared, inputs / "chelsea.jpg", name="half.yaml"), "local")
    assert summary(half) == {"chelsea__starry_night.jpg": ("done", 1)}
    rest = run(manifest(shared, inputs), "ray")
    assert summary(rest) == {"chelsea__starry_night.jpg": ("skipped", 0), "coffee__starry_night.jpg": ("done", 1),
                             "pan__starry_night.mp4": ("done", 1)}
    back = run(manifest(shared, inputs), "local")  # and back: everything is current
    assert {status for status, _ in summary(back).values()} == {"skipped"}


def _working_processes(method: str) -> list[int]:
    """Ray names a worker process after the actor method it is running."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"_Worker.{method}" in (entry / "cmdline").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


class _KillsTheWorkerOnItsFirstStep(Recorder):
    """Kills the worker running the item once it reports a step: well into the optimisation,
    however slow a busy machine makes it to get there."""

    def __init__(self):
        super().__init__()
        self.killed = None

    def progress(self, progress):
        busy = _working_processes("execute")
        if self.killed is None and busy:
            self.killed = busy[0]
            os.kill(busy[0], signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_worker_is_replaced_and_its_item_retried(tmp_path):
    inputs = photos(tmp_path / "in", ("chelsea",))
    path = manifest(tmp_path, inputs, settings="{size: 64, iterations: 60, device: cpu, tolerance: 0}")
    events = _KillsTheWorkerOnItsFirstStep()
    report = run(path, "ray", events)
    killed = events.killed
    assert killed, "never saw a worker running the item"
    record = report.items[0]
    assert (record.status, record.attempts) == ("done", 2), record
    assert "worker lost" in record.retries[0] and "chelsea.jpg" in record.retries[0]
    assert any("retrying on another (attempt 2/3)" in note for note in events.notes)
    on_disk = json.loads((tmp_path / "out/report.json").read_text())["items"][0]
    assert on_disk["attempts"] == 2 and on_disk["retries"] == record.retries
    with Image.open(record.output) as image:
        image.load()


def test_a_corrupt_input_fails_once_and_the_rest_is_done(tmp_path):
    inputs = photos(tmp_path / "in", ("chelsea",))
    (inputs / "broken.jpg").write_bytes(b"not a jpeg at all")
    report = run(manifest(tmp_path, inputs), "ray")
    assert summary(report) == {"broken__starry_night.jpg": ("failed", 1), "chelsea__starry_night.jpg": ("done", 1)}
    broken = next(r for r in report.items if r.status == "failed")
    assert "broken.jpg" in broken.error and broken.retries == []


def test_a_long_clip_splits_into_segments_with_no_visible_seam(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_clip(inputs / "long.mp4", pan_frames(48))
    # Three segments of 16 frames; the later two start 4 + 10 frames early and fade in over the last 10.
    video = "{frame_iterations: 3, segment_frames: 16, segment_overlap: 10, segment_burn_in: 4}"
    events = Recorder()
    report = run(manifest(tmp_path, inputs, video=video), "ray", events, workers=2)
    record = report.items[0]
    assert record.status == "done", record.error
    output = Path(record.output)
    whole = write_clip(tmp_path / "whole.mp4", pan_frames(48))
    assert frame_count(output) == record.video["frames_out"] == frame_count(whole) == 48
    assert probe_video(output).fps == probe_video(whole).fps
    video_seconds, audio_seconds = stream_durations(output)
    assert record.video["audio_kept"] and abs(audio_seconds - video_seconds) <= 1 / 30
    figures = record.video
    assert figures["segments"] == 3 and [s["frame"] for s in figures["seams"]] == [16, 32]
    assert figures["seam_warping_error"] <= 1.25 * figures["within_warping_error"], figures
    assert figures["seam_ratio"] == pytest.approx(figures["seam_warping_error"] / figures["within_warping_error"])
    assert events.started == [(1, 1, "long.mp4")] and events.finished == ["done"]
    assert not list(tmp_path.glob("out/a/.long*"))  # segment work folders removed


def test_backend_ray_without_ray_is_one_line_and_exit_3(tmp_path):
    inputs = photos(tmp_path / "in", ("chelsea",))
    path = manifest(tmp_path, inputs)
    script = ("import sys; sys.modules['ray'] = None\n"  # import ray now raises ImportError
              "import cli; sys.argv = ['stylize', 'run', sys.argv[1], '--backend', 'ray']; cli.main()")
    result = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    assert result.returncode == 3, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "error: backend ray needs Ray: pip install 'stylize[ray]' (or use --backend local)", result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out/a").exists()  # nothing ran


def test_manifest_backend_is_checked(tmp_path):
    inputs = photos(tmp_path / "in", ("chelsea",))
    from pipeline.batch.manifest import ManifestError

    with pytest.raises(ManifestError, match="backend: Input should be 'local' or 'ray'"):
        load_manifest(manifest(tmp_path, inputs, extra="backend: spark\n"))
