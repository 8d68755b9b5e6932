"""The command line: documented exit codes, one-line errors, real outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from common import MATISSE, PHOTO, REPO, STARRY, invoke

TINY = ["--size", "48", "--iterations", "5", "--device", "cpu", "--quiet"]


def assert_one_line_error(result, *fragments: str) -> None:
    text = result.output.strip()
    assert "Traceback" not in text
    error_lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, text
    for fragment in fragments:
        assert fragment in error_lines[0], text


def test_image_writes_a_stylized_file(tmp_path):
    output = tmp_path / "out" / "cat.png"
    result = invoke("image", PHOTO, "--style", f"{STARRY}:2", "--style", MATISSE, "-o", output, *TINY)
    assert result.exit_code == 0, result.output
    with Image.open(output) as written:
        assert max(written.size) == 48
        assert written.size == (48, 32)  # chelsea is 451x300
    assert [p.name for p in output.parent.iterdir()] == ["cat.png"]  # no temporary files left


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make_content, fragment",
    [
        (lambda d: d / "missing.jpg", "file not found"),
        (lambda d: _write(d / "empty.jpg", b""), "empty"),
        (lambda d: _write(d / "text.png", b"not an image"), "not a readable image"),
        (lambda d: _write(d / "cut.jpg", PHOTO.read_bytes()[:2000]), "corrupt or truncated"),
    ],
    ids=["missing", "empty", "text", "truncated"],
)
def test_bad_content_exits_2_naming_the_file(tmp_path, make_content, fragment):
    content = make_content(tmp_path)
    result = invoke("image", content, "--style", STARRY, "-o", tmp_path / "out.jpg", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result, str(content), fragment)
    assert not (tmp_path / "out.jpg").exists()


def test_bad_style_exits_2_naming_the_file(tmp_path):
    result = invoke("image", PHOTO, "--style", tmp_path / "nope.jpg", "-o", tmp_path / "out.jpg", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result, "nope.jpg", "file not found")


def test_unsupported_output_format_exits_2(tmp_path):
    result = invoke("image", PHOTO, "--style", STARRY, "-o", tmp_path / "out.gifx", *TINY)
    assert result.exit_code == 2
    assert_one_line_error(result, "unsupported output format")


def test_invalid_setting_exits_2():
    result = invoke("image", PHOTO, "--style", STARRY, "-o", "x.jpg", "--size", "48", "--optimizer", "sgd", "--device", "cpu")
    assert result.exit_code == 2
    assert_one_line_error(result, "optimizer")


def test_cuda_without_gpu_exits_3(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = invoke("image", PHOTO, "--style", STARRY, "-o", tmp_path / "out.jpg", "--size", "48", "--device", "cuda")
    assert result.exit_code == 3
    assert_one_line_error(result, "CUDA is not available")


def test_info_names_weights_file_and_preprocessing():
    result = invoke("info", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin" in result.output
    assert "BGR, 0..255, minus mean [103.939, 116.779, 123.68]" in result.output
    assert "ffmpeg" in result.output and "torch" in result.output


def test_missing_weights_file_exits_2(tmp_path):
    result = invoke("info", "--weights", tmp_path / "vgg.pth")
    assert result.exit_code == 2
    assert_one_line_error(result, "weights file not found")


def test_run_manifest_writes_each_style(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"output_dir: out\n"
        f"defaults: {{size: 40, iterations: 3, device: cpu}}\n"
        f"jobs:\n"
        f"  - name: cats\n    input: {PHOTO}\n    styles: [{STARRY}, {MATISSE}]\n    format: png\n"
    )
    result = invoke("run", manifest, "--quiet")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / "out" / "cats").iterdir())
    assert written == [
        ".thumbs",  # report.html's thumbnails, hidden from input walks
        "chelsea__starry_night.png",
        "chelsea__starry_night.png.json",
        "chelsea__woman-with-hat-matisse.png",
        "chelsea__woman-with-hat-matisse.png.json",
    ]


def test_run_bad_manifest_exits_2(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("output_dir: out\njobs:\n  - name: x\n    input: nowhere\n    style: s.jpg\n    sise: 3\n")
    result = invoke("run", manifest)
    assert result.exit_code == 2
    assert_one_line_error(result, str(manifest), "sise")


def test_python_cli_entry_point_runs():
    completed = subprocess.run([sys.executable, str(REPO / "cli.py"), "info", "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert "weights file" in completed.stdout


def test_video_command_writes_a_clip_and_rejects_a_bad_one(tmp_path):
    from clips import pan_frames, write_clip

    from clips import frame_count

    clip = write_clip(tmp_path / "pan.mp4", pan_frames(4))
    output = tmp_path / "out.mp4"
    result = invoke("video", clip, "--style", STARRY, "-o", output, "--size", "48", "--iterations", "3",
                    "--frame-iterations", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert frame_count(output) == 4 and "audio kept" in result.output
    assert "frame 3: style ×" in result.output and "of a photo's" in result.output  # how the frames hold up
    (tmp_path / "text.mp4").write_text("not a video")
    bad = invoke("video", tmp_path / "text.mp4", "--style", STARRY, "-o", tmp_path / "x.mp4", "--device", "cpu")
    assert bad.exit_code == 2
    assert_one_line_error(bad, "text.mp4")
    wrong = invoke("video", clip, "--style", STARRY, "-o", tmp_path / "x.mp4", "--codec", "divx", "--device", "cpu")
    assert wrong.exit_code == 2
    assert_one_line_error(wrong, "codec")


def test_a_second_writer_of_one_output_is_refused_naming_the_holder(tmp_path):
    import json
    import os
    import socket

    output = tmp_path / "cat.jpg"
    (tmp_path / ".cat.jpg.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    refused = invoke("image", PHOTO, "--style", STARRY, "-o", output, *TINY)
    assert refused.exit_code == 3 and f"pid {os.getpid()}" in refused.output and str(output) in refused.output
    assert not output.exists()


def test_image_and_video_clean_up_what_a_killed_run_left(tmp_path):
    leftovers = [tmp_path / ".cat.x1y2.partial.jpg", tmp_path / ".clip.ab12.partial.mp4"]
    for leftover in leftovers:
        leftover.write_bytes(b"half")
    (tmp_path / ".cat.jpg.lock").write_text('{"pid": 999999999, "host": "%s"}' % __import__("socket").gethostname())
    assert invoke("image", PHOTO, "--style", STARRY, "-o", tmp_path / "cat.jpg", *TINY).exit_code == 0
    clip = invoke("video", REPO / "samples/realshort.mp4", "--style", STARRY, "-o", tmp_path / "clip.mp4",
                  "--size", "32", "--iterations", "2", "--frame-iterations", "1", "--max-frames", "2")
    assert clip.exit_code == 0, clip.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.jpg", "clip.mp4"]  # no temporaries, locks or work folder
