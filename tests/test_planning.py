"""Planning is safe on real folders: no two items share an output, nothing is written outside
output_dir, folder walks and globs never follow a symlinked folder into a loop, and outputs
are never planned as inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from common import MATISSE, STARRY, invoke
from pipeline.batch.manifest import ManifestError, parse_manifest
from pipeline.batch.plan import plan


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 24), (90, 120, 200)).save(path)
    return path


def _manifest(tmp_path: Path, jobs: str, output_dir: str = "out") -> Path:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"output_dir: {output_dir}\ndefaults: {{size: 32, iterations: 2, device: cpu}}\njobs:\n{jobs}")
    return manifest


def test_two_contents_or_two_styles_on_one_output_are_refused_before_any_work(tmp_path):
    photos = tmp_path / "photos"
    _photo(photos / "cat.jpg"), _photo(photos / "cat.png"), _photo(photos / "dog.jpg")
    styles = [_photo(tmp_path / "s1/art.jpg"), _photo(tmp_path / "s2/art.jpg")]
    manifest = _manifest(tmp_path, f"  - name: a\n    input: {photos}\n    style: {STARRY}\n"
                                   f"  - name: b\n    input: {photos}/dog.jpg\n    styles: [{styles[0]}, {styles[1]}]\n")
    checked = invoke("validate", manifest)
    assert checked.exit_code == 2 and "Traceback" not in checked.output
    lines = checked.output.strip().splitlines()
    assert any("jobs[0]" in line and "cat.jpg" in line and "cat.png" in line and "both write" in line for line in lines), lines
    assert any("jobs[1]" in line and "s1/art.jpg" in line and "s2/art.jpg" in line for line in lines), lines
    ran = invoke("run", manifest)
    assert ran.exit_code == 2 and "both write" in ran.output
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_job_named_dot_dot_cannot_write_outside_output_dir(tmp_path):
    _photo(tmp_path / "in/x.jpg")
    manifest = _manifest(tmp_path, f"  - name: '..'\n    input: {tmp_path}/in\n    style: {STARRY}\n", output_dir="box/out")
    checked = invoke("validate", manifest)
    assert checked.exit_code == 2 and "jobs[0].name" in checked.output and "outside output_dir" in checked.output
    assert invoke("run", manifest).exit_code == 2
    assert not list((tmp_path / "box").rglob("*.jpg"))


def _looped_folder(root: Path) -> Path:
    _photo(root / "a.jpg"), _photo(root / "sub/b.jpg")
    os.symlink(".", root / "self")
    os.symlink("..", root / "sub/up")
    os.symlink(root, root / "sub/again")
    return root


@pytest.mark.parametrize("input_, recursive", [("photos", True), ("photos/**/*.jpg", True), ("photos/**/*.jpg", False)])
def test_symlink_loops_neither_hang_nor_multiply_items(tmp_path, input_, recursive):
    _looped_folder(tmp_path / "photos")
    manifest = _manifest(tmp_path, f"  - name: a\n    input: {tmp_path / input_}\n    recursive: {str(recursive).lower()}\n"
                                   f"    style: {STARRY}\n")
    loaded, problems = parse_manifest(manifest)
    assert not problems
    names = sorted(item.content.relative_to(tmp_path / "photos").as_posix() for item in plan(loaded))
    assert names == (["a.jpg", "sub/b.jpg"] if recursive else ["sub/b.jpg"])
    assert invoke("validate", manifest).exit_code == 0
    assert invoke("run", manifest, "--dry-run").exit_code == 0


def test_outputs_inside_a_recursive_input_folder_are_not_stylized_again(tmp_path):
    photos = tmp_path / "p"
    _photo(photos / "x.jpg")
    manifest = _manifest(tmp_path, f"  - name: p\n    input: {photos}\n    recursive: true\n    style: {STARRY}\n", output_dir="p/out")
    assert invoke("run", manifest).exit_code == 0
    again = invoke("run", manifest, "--verbose")
    assert again.exit_code == 0 and "1 item(s), 0 to run" in again.output, again.output
    assert sorted(p.name for p in photos.rglob("*.jpg") if ".thumbs" not in p.parts) == ["x.jpg", "x__starry_night.jpg"]


names = st.sampled_from(["a", "b", "A", "..", ".", "x.y", "-", "job_1"])
stems = st.sampled_from(["cat", "Cat", "dog", "x__y", "a b", "-lead", "q'uote", "semi;colon", "$(x)"])
suffixes = st.sampled_from([".jpg", ".png", ".JPG", ".webp", ".mp4", ".txt"])
files = st.lists(st.tuples(st.sampled_from(["", "sub", "sub/deep", "Sub"]), stems, suffixes), min_size=1, max_size=10)
links = st.lists(st.tuples(st.sampled_from(["", "sub", "sub/deep"]), st.sampled_from([".", "..", "../..", "sub"])), max_size=3)
jobs = st.lists(st.tuples(names, st.sampled_from(["photos", "photos/**/*.jpg", "photos/*.*", "photos/sub"]), st.booleans()),
                min_size=1, max_size=3)


@settings(max_examples=150, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(files=files, links=links, jobs=jobs, output_inside=st.booleans())
def test_planning_terminates_stays_inside_output_dir_and_never_shares_an_output(files, links, jobs, output_inside):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        photos = root / "photos"
        photos.mkdir()
        for where, stem, suffix in files:
            (photos / where).mkdir(parents=True, exist_ok=True)
            (photos / where / f"{stem}{suffix}").write_bytes(b"")
        for where, target in links:
            (photos / where).mkdir(parents=True, exist_ok=True)
            link = photos / where / f"link{len(list((photos / where).iterdir()))}"
            os.symlink(target, link)
        listed = "".join(f"  - name: '{name}'\n    input: {root / input_}\n    recursive: {str(recursive).lower()}\n"
                         f"    styles: [{STARRY}, {MATISSE}]\n" for name, input_, recursive in jobs)
        manifest = _manifest(root, listed, output_dir="photos/out" if output_inside else "out")
        loaded, problems = parse_manifest(manifest)
        if problems:
            return  # e.g. a job name used twice: refused before planning, with its location
        try:
            items = plan(loaded)
        except ManifestError as error:
            assert all("both write" in p or "outside output_dir" in p for p in error.problems), error.problems
            return
        except Exception as error:  # a job that matches no media is a located InputError
            assert "no images or videos found" in str(error), error
            return
        root_out = loaded.output_dir.resolve()
        outputs = [item.output.resolve() for item in items]
        assert all(output.is_relative_to(root_out) for output in outputs)
        assert len({str(output).casefold() for output in outputs}) == len(outputs)
        assert not any(item.content.resolve().is_relative_to(root_out) for item in items)
