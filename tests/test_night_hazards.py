"""What must never end a night early or garble its record: a disk that fills, names no
terminal, HTML page or file system expects, and outputs that would collide on another OS."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

import pipeline.batch.report
import pipeline.batch.tasks
from common import PHOTO, STARRY, invoke


def photos_manifest(tmp_path: Path, names: list[str], output_dir: str | Path = "out") -> Path:
    photos = tmp_path / "photos"
    for name in names:
        path = photos / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(PHOTO).resize((48, 32)).save(path, format="JPEG")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: {output_dir}\ndefaults: {{size: 32, iterations: 0, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    recursive: true\n    style: {STARRY}\n")
    return manifest


def report_in(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def error_lines(result) -> list[str]:
    assert "Traceback" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def no_leftovers(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*") if p.name.endswith((".lock", ".partial.jpg", ".partial.json", ".partial.html"))]


def test_a_full_disk_ends_the_run_in_one_line_with_a_finished_report_and_a_rerun_does_the_rest(tmp_path, monkeypatch):
    manifest = photos_manifest(tmp_path, ["p0.jpg", "p1.jpg", "p2.jpg"])
    real_save, saved = pipeline.batch.tasks.save_image, []

    def fills_up(image, path, **options):
        if saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(real_save(image, path, **options))

    monkeypatch.setattr(pipeline.batch.tasks, "save_image", fills_up)
    full = invoke("run", manifest)
    assert full.exit_code == 3, full.output
    assert len(error_lines(full)) == 1 and "no space left" in error_lines(full)[0]
    report = report_in(tmp_path / "out")
    assert report["finished"] and report["totals"]["done"] == 1 and report["totals"]["interrupted"] == 1
    assert no_leftovers(tmp_path / "out") == []
    monkeypatch.setattr(pipeline.batch.tasks, "save_image", real_save)
    rerun = invoke("run", manifest)
    assert rerun.exit_code == 0 and report_in(tmp_path / "out")["totals"] | {"seconds": 0} == {
        "items": 3, "done": 2, "skipped": 1, "failed": 0, "seconds": 0}


def test_a_real_small_file_system_fills_and_the_run_ends_cleanly(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        manifest = photos_manifest(tmp_path, [f"p{n}.jpg" for n in range(40)], mount / "out")
        full = invoke("run", manifest)
        assert full.exit_code == 3 and len(error_lines(full)) == 1, full.output
        report = report_in(mount / "out")
        assert report["finished"] and 0 < report["totals"]["done"] < 40
        assert no_leftovers(mount / "out") == []
        subprocess.run(["mount", "-o", "remount,size=4m", str(mount)], check=True)
        rerun = invoke("run", manifest)
        assert rerun.exit_code == 0, rerun.output
        assert report_in(mount / "out")["totals"]["skipped"] == report["totals"]["done"]
    finally:
        subprocess.run(["umount", str(mount)])


def test_a_report_rewrite_that_fails_during_the_run_does_not_stop_it(tmp_path, monkeypatch):
    manifest = photos_manifest(tmp_path, ["p0.jpg", "p1.jpg"])
    real_write, failures = pipeline.batch.report.write_text, []

    def flaky(path, text):
        if Path(path).name == "report.html" and not failures:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, text)

    monkeypatch.setattr(pipeline.batch.report, "write_text", flaky)
    result = invoke("run", manifest)
    assert result.exit_code == 0 and failures, result.output
    assert report_in(tmp_path / "out")["totals"]["done"] == 2 and (tmp_path / "out" / "report.html").is_file()


ODD_NAMES = [os.fsdecode(b"bad\xffbyte.jpg"), "[bold]x.jpg", "[/x].jpg", "line\nbreak.jpg", "tab\tand\x1bescape.jpg"]  # [/x]: a folder [


def test_names_no_terminal_or_page_expects_are_stylized_reported_and_shown_one_a_line(tmp_path):
    manifest = photos_manifest(tmp_path, ODD_NAMES)
    result = invoke("run", manifest)
    assert result.exit_code == 0, result.output
    report = report_in(tmp_path / "out")
    assert report["finished"] and report["totals"]["done"] == len(ODD_NAMES)
    rows = [line for line in result.output.splitlines() if line.startswith("a  ")]
    assert len(rows) == len(ODD_NAMES)  # one line an item, however the names break lines
    assert r"bad\xffbyte.jpg" in result.output and "[bold]x.jpg" in result.output and r"line\nbreak.jpg" in result.output
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert r"bad\xffbyte__starry_night.jpg" in page and "bad%FFbyte__starry_night.jpg" in page


def test_one_name_spelled_two_unicode_ways_is_a_collision(tmp_path):
    composed, decomposed = unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")
    assert composed != decomposed
    manifest = photos_manifest(tmp_path, [composed, decomposed])
    result = invoke("validate", manifest)
    assert result.exit_code == 2 and "would both write" in result.output, result.output


def test_a_long_input_name_gets_a_shortened_output_name_and_a_long_output_name_is_refused(tmp_path):
    long_stem = "n" * 200 + "é" * 20  # 240 bytes
    manifest = photos_manifest(tmp_path, [f"{long_stem}.jpg", f"{long_stem[:-1]}x.jpg"])
    result = invoke("run", manifest)
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "out" / "a").glob("*.jpg"))
    assert len(outputs) == 2 and all(len(os.fsencode(p.name)) <= 255 - 24 and "~" in p.name for p in outputs)
    refused = invoke("image", PHOTO, "--style", STARRY, "-o", tmp_path / ("o" * 250 + ".jpg"), "--size", "32")
    assert refused.exit_code == 2 and len(error_lines(refused)) == 1 and "file name too long" in refused.output


def test_an_output_folder_no_file_can_be_made_in_is_refused_even_as_root(tmp_path):
    manifest = photos_manifest(tmp_path, ["p0.jpg"], "/proc/stylize-out")
    result = invoke("validate", manifest)
    assert result.exit_code == 2 and "cannot be written" in result.output, result.output
