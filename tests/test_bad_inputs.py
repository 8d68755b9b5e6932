"""Bad input, refused the way the README promises: exit 2, one line naming the file or the
manifest location, no traceback, before any work, and nothing finished touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common import CLIP, PHOTO, REPO, STARRY, invoke, one_line_error
from pipeline.media.images import load_image


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    pixels = np.asarray(load_image(tmp_path / "deep.png"), dtype=int)
    assert pixels.shape == (32, 64, 3)
    assert pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
    assert abs(pixels[16, 0, 0] - 128) <= 2  # the middle of the ramp is mid-grey, not white


def test_transparency_lands_on_white_and_cmyk_converts(tmp_path):
    clear = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    clear.paste((0, 0, 255, 255), (0, 0, 20, 20))
    clear.save(tmp_path / "alpha.png")
    pixels = np.asarray(load_image(tmp_path / "alpha.png"))
    assert tuple(pixels[10, 5]) == (0, 0, 255) and tuple(pixels[10, 35]) == (255, 255, 255)
    Image.new("CMYK", (40, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = np.asarray(load_image(tmp_path / "cmyk.jpg"), dtype=int)[10, 10]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


@pytest.mark.parametrize("option, value, fragment", [
    ("--size", "100000", "size"), ("--style-weight", "nan", "style_weight"),
    ("--content-weight", "inf", "content_weight"), ("--device", "tpu", "unknown device 'tpu'"),
    ("--strength", "1.5", "strength"),
])
def test_settings_beyond_reason_are_refused(tmp_path, option, value, fragment):
    output = tmp_path / "out.jpg"
    one_line_error(invoke("image", PHOTO, "--style", STARRY, "-o", output, option, value), fragment)
    assert not output.exists()


def test_thin_photo_and_thin_style_are_refused_with_their_names(tmp_path):
    Image.new("RGB", (4000, 20), (200, 100, 50)).save(tmp_path / "thin.png")
    one_line_error(invoke("image", tmp_path / "thin.png", "--style", STARRY, "-o", tmp_path / "a.jpg", "--size", "64"),
                   "thin.png", "VGG19 needs at least 16")
    one_line_error(invoke("image", PHOTO, "--style", tmp_path / "thin.png", "-o", tmp_path / "b.jpg", "--size", "64"),
                   "thin.png", "VGG19 needs at least 16")


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    Image.new("L", (10000, 10000)).save(tmp_path / "bomb.png", optimize=True)
    assert (tmp_path / "bomb.png").stat().st_size < 2_000_000
    one_line_error(invoke("image", tmp_path / "bomb.png", "--style", STARRY, "-o", tmp_path / "x.jpg"),
                   "bomb.png", "10000x10000", "budget")


def test_validate_lists_every_bad_input_with_its_location(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(PHOTO).resize((60, 40)).save(photos / "fine.jpg")
    Image.new("RGB", (4000, 20)).save(photos / "thin.png")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"""
output_dir: out
defaults: {{size: 64, device: tpu}}
jobs:
  - name: a
    input: {photos}
    style: [{{path: {STARRY}, weight: 0}}]
  - name: b
    input: {photos}/fine.jpg
    style: [{{path: {STARRY}, weight: .nan}}]
    size: 100000
""")
    result = invoke("validate", manifest)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("unknown device 'tpu'") == 1  # a problem of the defaults is reported once, as theirs
    expected = ["defaults.device: unknown device 'tpu'", "jobs[0].style: style weights are all zero",
                "jobs[1].style[0].weight: Input should be a finite number", "jobs[1].size: Input should be less than or equal to 8192",
                "thin.png: is 4000x20"]
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert invoke("run", manifest).exit_code == 2
    assert not (tmp_path / "out").exists()




@pytest.mark.parametrize("command, output, extra, fragment", [
    ("video", "x.avi", [], "unsupported video format .avi"),
    ("video", "x.mov", ["--codec", "vp9"], ".mov cannot hold vp9"),
    ("video", "passwd/x.mp4", [], "is a file, not a folder"),
    ("image", "x.gif", [], "unsupported output format .gif"),
    ("image", "passwd/x.jpg", [], "is a file, not a folder"),
])
def test_outputs_are_checked_before_any_work(tmp_path, command, output, extra, fragment):
    (tmp_path / "passwd").write_text("a file where a folder would be\n")
    source = CLIP if command == "video" else PHOTO
    line = one_line_error(invoke(command, source, "--style", STARRY, "-o", tmp_path / output, "--size", "32", *extra), fragment)
    assert str(tmp_path / output) in line  # the user's path, never a temporary one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]  # nothing written, no work folder


def test_an_output_dir_under_a_file_is_a_validate_error(tmp_path):
    (tmp_path / "taken").write_text("")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: taken/out\njobs:\n  - name: a\n    input: {PHOTO}\n    style: {STARRY}\n")
    result = invoke("validate", manifest)
    assert result.exit_code == 2 and "output_dir" in result.output and "is a file" in result.output


@pytest.mark.parametrize("make", ["moov-less clip", "text named .mp4"])
def test_native_library_noise_never_precedes_the_one_line_error(tmp_path, make):
    """OpenCV and the FFmpeg inside it write straight to the process's stderr: run the real CLI."""
    clip = tmp_path / "broken clip; $(x).mp4"
    clip.write_bytes(CLIP.read_bytes()[:3000] if make == "moov-less clip" else b"hello")
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "video", str(clip), "--style", str(STARRY), "-o",
                           str(tmp_path / "out.mp4")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(clip) in lines[0], done.stderr


def _spoil(kind: str, photos: Path, manifest: Path) -> str:
    """Add one bad thing to a folder whose outputs are finished; the fragment its error names."""
    if kind == "collision":
        Image.open(photos / "a.jpg").save(photos / "a.png")
        return "both write"
    if kind == "thin photo":
        Image.new("RGB", (3000, 12)).save(photos / "thin strip.png")
        return "thin strip.png"
    if kind == "bomb":
        Image.new("L", (10000, 10000)).save(photos / "-bomb.png")
        return "-bomb.png"
    if kind == "bad yaml":
        manifest.write_text(manifest.read_text() + "  - name: [unclosed\n")
        return "not valid YAML"
    manifest.write_text(manifest.read_text().replace("name: a", "name: '..'"))  # traversal
    return "outside output_dir"


REPORTS = ("report.json", "report.html", "report.jsonl")  # rewritten by every run


@pytest.mark.parametrize("kind", ["collision", "thin photo", "bomb", "bad yaml", "traversal"])
def test_bad_input_added_later_is_refused_and_finished_outputs_keep_their_bytes(tmp_path, kind):
    """validate refuses each (exit 2); run refuses the manifest-wide ones before any work (exit 2) and
    records a bad photo as that item's failure while the night goes on (exit 1)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(PHOTO).resize((48, 32)).save(photos / "a.jpg")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 2, device: cpu}}\n"
                        f"jobs:\n  - name: a\n    input: {photos}\n    style: {STARRY}\n")
    assert invoke("run", manifest).exit_code == 0
    finished = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    fragment = _spoil(kind, photos, manifest)
    checked = invoke("validate", manifest)
    assert checked.exit_code == 2 and fragment in checked.output and "Traceback" not in checked.output, checked.output
    ran = invoke("run", manifest)
    assert "Traceback" not in ran.output and "Warning" not in ran.output
    if kind in ("thin photo", "bomb"):
        assert ran.exit_code == 1
        failed = [i for i in json.loads((tmp_path / "out/report.json").read_text())["items"] if i["status"] == "failed"]
        assert len(failed) == 1 and fragment in failed[0]["error"]
    else:
        assert ran.exit_code == 2 and fragment in ran.output, ran.output
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file() and p.name not in REPORTS}
    assert {p: data for p, data in finished.items() if p.name not in REPORTS} == after
