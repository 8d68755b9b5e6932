"""Reading (with every way a file can be bad) and atomically writing images."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import InputError
from pipeline.engine.tensors import as_tensor, resize_long_edge, to_pil
from pipeline.media.images import fit_long_edge, load_image, save_image


def _raises_naming(path):
    with pytest.raises(InputError) as caught:
        load_image(path)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_missing_file(tmp_path):
    assert "not found" in _raises_naming(tmp_path / "missing.jpg")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert "empty" in _raises_naming(path)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not a picture at all\n" * 20)
    assert "not a readable image" in _raises_naming(path)


def test_truncated_jpeg(tmp_path, photo):
    data = photo.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _raises_naming(path)


def test_folder_is_not_an_image(tmp_path):
    folder = tmp_path / "pictures.jpg"
    folder.mkdir()
    _raises_naming(folder)


def test_real_image_loads_as_rgb(photo):
    image = load_image(photo)
    assert image.mode == "RGB" and image.size == (451, 300)


def test_exif_orientation_is_honoured(tmp_path):
    # Stored 40 wide x 20 high, red left half, blue right half; orientation 6 means
    # "rotate 90 degrees clockwise to display", which puts red on top.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    with Image.open(path) as raw:
        assert raw.size == (40, 20)

    loaded = load_image(path)
    assert loaded.size == (20, 40)
    pixels = np.asarray(loaded).astype(int)
    top, bottom = pixels[:15].mean(axis=(0, 1)), pixels[-15:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top  # red
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue
    assert tuple(as_tensor(path).shape) == (1, 3, 40, 20)


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "nested/deeper/out.webp", "out.TIFF"])
def test_save_image_is_atomic_and_decodes(tmp_path, name):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    target = tmp_path / name
    assert save_image(image, target) == target
    assert sorted(os.listdir(target.parent)) == [target.name]  # no temp file left behind
    with Image.open(target) as written:
        written.load()
        assert written.size == (32, 24)
    if target.suffix == ".png":
        assert np.array_equal(np.asarray(load_image(target)), np.asarray(image))


def test_save_image_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.png"
    save_image(Image.new("RGB", (8, 8), "red"), target)
    save_image(Image.new("RGB", (8, 8), "blue"), target)
    assert os.listdir(tmp_path) == ["out.png"]
    assert load_image(target).getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("name", ["out.gif", "out", "out.txt"])
def test_save_image_rejects_unknown_suffix(tmp_path, name):
    target = tmp_path / name
    with pytest.raises(InputError) as caught:
        save_image(Image.new("RGB", (8, 8)), target)
    assert str(target) in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_failed_save_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.jpg"
    save_image(Image.new("RGB", (8, 8), "red"), target)
    with pytest.raises(OSError):
        save_image(Image.new("RGBA", (8, 8)), target)  # JPEG cannot hold alpha
    assert os.listdir(tmp_path) == ["out.jpg"]  # old file intact, temp removed
    assert load_image(target).getpixel((4, 4))[0] > 200


def test_saved_file_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        target = save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")
    finally:
        os.umask(old)
    assert os.stat(target).st_mode & 0o777 == 0o644


def test_tensor_round_trip_and_resizing():
    array = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    tensor = as_tensor(array)
    assert tuple(tensor.shape) == (1, 3, 30, 50) and tensor.dtype == torch.float32
    assert np.array_equal(np.asarray(to_pil(tensor)), array)
    assert fit_long_edge(300, 451, 64) == (43, 64)
    assert tuple(resize_long_edge(tensor, 20).shape[-2:]) == (12, 20)
    with pytest.raises(InputError):
        as_tensor(torch.zeros(1, 4, 8, 8))
