"""Manifest runs: plan, resume, skip, isolate failures, lock, report, validate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common import MATISSE, REPO, STARRY, invoke
import pipeline.batch.tasks
from pipeline.batch.manifest import load_manifest
from pipeline.batch.plan import prepare
from pipeline.batch.runner import run_planned


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of small photos, one in a subfolder."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name, target in [("chelsea", "chelsea.jpg"), ("coffee", "coffee.jpg"), ("rocket", "sub/rocket.jpg")]:
        with Image.open(REPO / f"samples/photos/{name}.jpg") as image:
            image.resize((48, 32)).save(folder / target)
    return folder


def write_manifest(tmp_path: Path, photos: Path, *, b_iterations: int = 2, extra: str = "") -> Path:
    manifest = tmp_path / "nightly.yaml"
    manifest.write_text(
        f"""
output_dir: out
defaults: {{preset: preview, size: 32, iterations: 2, device: cpu}}
jobs:
  - name: a
    input: {photos}
    recursive: true
    styles: [{STARRY}, {MATISSE}]
  - name: b
    input: {photos}/*.jpg
    style: [{{path: {STARRY}, weight: 2}}, {MATISSE}]
    iterations: {b_iterations}
    format: png
{extra}"""
    )
    return manifest


def report_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "report.json").read_text())


def statuses(report: dict) -> dict[str, list[str]]:
    by_job: dict[str, list[str]] = {}
    for item in report["items"]:
        by_job.setdefault(item["job"], []).append(item["status"])
    return by_job


def test_run_then_rerun_does_no_work_and_a_changed_job_reruns_alone(tmp_path, photos, monkeypatch):
    manifest = write_manifest(tmp_path, photos)
    first = invoke("run", manifest)
    assert first.exit_code == 0, first.output
    report = report_of(tmp_path)
    assert report["totals"] == {"items": 8, "done": 8, "skipped": 0, "failed": 0, "seconds": report["totals"]["seconds"]}
    out = tmp_path / "out"
    assert (out / "a/sub/rocket__starry_night.jpg").is_file()  # folder structure kept
    assert (out / "b/chelsea__starry_night+woman-with-hat-matisse.png").is_file()
    sidecar = json.loads((out / "a/chelsea__starry_night.jpg.json").read_text())
    assert sidecar["settings"]["size"] == 32 and sidecar["settings"]["tolerance"] == 0.001  # preset then defaults
    assert {"key", "losses", "seconds", "device", "version", "iterations"} <= set(sidecar)
    item = report["items"][0]
    assert {"job", "input", "style", "output", "status", "seconds", "iterations", "losses", "error"} <= set(item)

    def no_work(*args, **kwargs):
        raise AssertionError("a current output was stylized again")

    monkeypatch.setattr(pipeline.batch.tasks, "stylize_batch", no_work)
    second = invoke("run", manifest)
    assert second.exit_code == 0, second.output
    assert statuses(report_of(tmp_path)) == {"a": ["skipped"] * 6, "b": ["skipped"] * 2}
    monkeypatch.undo()

    write_manifest(tmp_path, photos, b_iterations=3)
    third = invoke("run", manifest)
    assert third.exit_code == 0, third.output
    assert statuses(report_of(tmp_path)) == {"a": ["skipped"] * 6, "b": ["done"] * 2}


def test_force_only_and_dry_run(tmp_path, photos):
    manifest = write_manifest(tmp_path, photos)
    dry = invoke("run", manifest, "--dry-run", "--verbose")
    assert dry.exit_code == 0 and "8 item(s), 8 to run" in dry.output
    assert not (tmp_path / "out" / "a").exists()
    only = invoke("run", manifest, "--only", "b")
    assert only.exit_code == 0, only.output
    assert statuses(report_of(tmp_path)) == {"b": ["done"] * 2}
    forced = invoke("run", manifest, "--only", "b", "--force")
    assert statuses(report_of(tmp_path)) == {"b": ["done"] * 2}, forced.output
    unknown = invoke("run", manifest, "--only", "zzz")
    assert unknown.exit_code == 2 and "no job named 'zzz'" in unknown.output


def test_bad_files_are_reported_and_the_rest_runs(tmp_path, photos):
    (photos / "cut.jpg").write_bytes((photos / "chelsea.jpg").read_bytes()[:300])
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("not a picture")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 2, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    style: {STARRY}\n")
    result = invoke("run", manifest)
    assert result.exit_code == 1, result.output
    items = {Path(i["input"]).name: i for i in report_of(tmp_path)["items"]}
    assert items["chelsea.jpg"]["status"] == items["coffee.jpg"]["status"] == "done"
    assert "corrupt or truncated" in items["cut.jpg"]["error"]
    assert "empty" in items["empty.jpg"]["error"]
    assert "not a readable image" in items["notes.png"]["error"]
    assert all(items[n]["status"] == "failed" for n in ("cut.jpg", "empty.jpg", "notes.png"))
    assert "Traceback" not in result.output


def test_validate_reports_every_mistake_with_its_location(tmp_path, photos):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        f"""
output_dir: out
colour: red
jobs:
  - name: a
    input: {photos}
    style: [{STARRY}, {tmp_path}/missing.jpg]
    size: -5
  - name: b
    input: {tmp_path}/nowhere
    preset: ultra
    style: {STARRY}
"""
    )
    result = invoke("validate", manifest)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    expected = [
        "colour: unknown key",
        "jobs[0].style[1].path: ",
        "jobs[0].size: Input should be greater than 15",
        "jobs[1].input: ",
        "jobs[1].preset: no preset named 'ultra'",
    ]
    lines = result.output.strip().splitlines()
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, (fragment, result.output)
    assert all(line.startswith(f"error: {manifest}: ") for line in lines)
    assert invoke("run", manifest).exit_code == 2  # run refuses before any work


def test_validate_finds_undecodable_inputs(tmp_path, photos):
    (photos / "broken.png").write_text("no")
    manifest = write_manifest(tmp_path, photos)
    result = invoke("validate", manifest)
    assert result.exit_code == 2 and "broken.png" in result.output
    (photos / "broken.png").unlink()
    assert invoke("validate", manifest).exit_code == 0


def test_a_live_lock_stops_a_second_run(tmp_path, photos):
    manifest = write_manifest(tmp_path, photos)
    lock = tmp_path / "out" / ".stylize.lock"
    lock.parent.mkdir()
    import socket

    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    result = invoke("run", manifest)
    assert result.exit_code == 3
    assert f"pid {os.getpid()}" in result.output and "in use by another stylize" in result.output


def test_out_of_memory_retries_with_smaller_tiles_then_fails_alone(tmp_path, photos, monkeypatch):
    real = pipeline.batch.tasks.stylize_batch
    tiles_tried = []

    def tight_memory(contents, styles, settings, callback=None):
        tiles_tried.append(settings.tile_size)
        if "coffee" in str(contents[0]) or settings.tile_size > 256:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(contents, styles, settings, callback)

    monkeypatch.setattr(pipeline.batch.tasks, "stylize_batch", tight_memory)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 2, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    style: {STARRY}\n")
    result = invoke("run", manifest)
    assert result.exit_code == 1
    items = {Path(i["input"]).name: i for i in report_of(tmp_path)["items"]}
    assert items["chelsea.jpg"]["status"] == "done"
    assert "out of GPU memory even with tile_size 128" in items["coffee.jpg"]["error"]
    assert tiles_tried[:3] == [1024, 512, 256]
    assert "retrying with tile_size 512" in result.output


def _run_in_background(manifest: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), "run", str(manifest)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_then_rerun_finishes_with_nothing_half_written(tmp_path, photos):
    manifest = write_manifest(tmp_path, photos)
    out = tmp_path / "out"
    process = _run_in_background(manifest)
    deadline = time.time() + 120
    while time.time() < deadline and len([p for p in out.rglob("*.json") if not p.name.startswith(".")]) < 3:  # report + 2 sidecars
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Hidden files are temporaries of writes the kill interrupted (report.json among them), not finished sidecars.
    finished_before = {p for p in out.rglob("*.json") if p.name != "report.json" and not p.name.startswith(".")}
    assert 0 < len(finished_before) < 8
    for image in [p for p in out.rglob("*") if p.suffix in (".jpg", ".png") and not p.name.startswith(".") and ".thumbs" not in p.parts]:
        with Image.open(image) as opened:
            opened.load()  # every visible output decodes in full

    result = invoke("run", manifest)
    assert result.exit_code == 0, result.output
    report = report_of(tmp_path)
    assert report["totals"]["done"] + report["totals"]["skipped"] == 8
    assert report["totals"]["skipped"] >= len(finished_before)
    assert not list(out.rglob("*.tmp")) and not (out / ".stylize.lock").exists()
    outputs = [p for p in out.rglob("*") if p.suffix in (".jpg", ".png") and ".thumbs" not in p.parts]
    assert len(outputs) == 8
    for image in outputs:
        with Image.open(image) as opened:
            opened.load()


def test_same_sized_photos_run_as_one_batch_each_with_its_own_loss(tmp_path, photos, monkeypatch):
    batches = []
    real = pipeline.batch.tasks.stylize_batch

    def spy(contents, styles, settings, callback=None):
        batches.append(len(contents))
        return real(contents, styles, settings, callback)

    monkeypatch.setattr(pipeline.batch.tasks, "stylize_batch", spy)
    outputs = {}
    for batch_size in (1, 3):
        manifest = tmp_path / f"m{batch_size}.yaml"
        manifest.write_text(f"output_dir: out{batch_size}\ndefaults: {{size: 32, iterations: 4, device: cpu, optimizer: adam}}\n"
                            f"jobs:\n  - name: a\n    input: {photos}\n    recursive: true\n    format: png\n    style: {STARRY}\n")
        loaded = load_manifest(manifest)
        report = run_planned(loaded, prepare(loaded), batch_size=batch_size)
        assert report.totals()["done"] == 3
        outputs[batch_size] = {Path(r.output).name: np.asarray(Image.open(r.output), dtype=float) for r in report.items}
    assert batches == [1, 1, 1, 3]
    for name, alone in outputs[1].items():
        # Adam treats each image independently: batched and alone agree up to float noise.
        assert np.abs(alone - outputs[3][name]).max() <= 2, name


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_record_the_item_in_flight_release_the_lock_and_a_rerun_finishes(tmp_path, photos, signal_number, exit_code):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 60, tolerance: 0, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    recursive: true\n    style: {STARRY}\n")
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "run", str(manifest)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and " step " not in _stderr_so_far(process):  # well into the first item
        time.sleep(0.05)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == exit_code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(signal_number).name}") and "Traceback" not in stderr
    assert not (tmp_path / "out/.stylize.lock").exists()
    report = report_of(tmp_path)
    assert report["finished"] and report["totals"]["interrupted"] == 1
    statuses = sorted(i["status"] for i in report["items"])
    assert statuses.count("interrupted") == 1 and set(statuses) <= {"done", "interrupted"}, statuses
    finished = invoke("run", manifest)
    assert finished.exit_code == 0, finished.output
    totals = report_of(tmp_path)["totals"]
    assert totals["done"] == 3 - statuses.count("done") and totals["skipped"] == statuses.count("done")


def _stderr_so_far(process: subprocess.Popen) -> str:
    """Lines the run has printed so far (its log goes to stderr), read without blocking on the rest."""
    import select

    text = getattr(process, "_seen", "")
    while select.select([process.stderr], [], [], 0)[0]:
        line = process.stderr.readline()
        if not line:
            break
        text += line
    process._seen = text
    return text
