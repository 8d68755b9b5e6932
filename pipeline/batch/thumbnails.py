"""Thumbnails for report.html: small JPEGs of an item's content, styles and result (of a clip:
the first, middle and last frames of the part of the source used and of the output). They are
made once per output and kept beside it in a hidden folder, which input walks pass over, so a
later manifest pointed at the output folder never stylizes them."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ..media.decode import probe_video, read_frames
from ..media.files import file_digest
from ..media.images import displayed_size, load_image, save_image
from .plan import PlanItem

THUMBS = ".thumbs"
STYLES = "styles"  # under output_dir/.thumbs: the paintings' thumbnails, shared by every output
EDGE = 256  # long edge in pixels
QUALITY = 80  # 10 to 30 KB at 256 px
FRAMES = ("first", "middle", "last")

Loader = Callable[[], dict[str, Image.Image]]  # the full-size pictures of a group of thumbnails


def thumbnails_folder(output: Path) -> Path:
    return output.parent / THUMBS / output.name


def make_thumbnails(item: PlanItem, output_dir: Path, video: dict | None = None) -> dict[str, dict]:
    """name -> {"path" (relative to output_dir), "width", "height"}: content, style-N and result;
    for a clip style-N, in-first/middle/last and out-first/middle/last. Those at least as new as
    the output are kept as they are. One that cannot be made is left out, never an error.
    `video`: the record's clip figures (frames_out saves counting the output's frames)."""
    try:
        output_time = item.output.stat().st_mtime_ns
    except OSError:
        return {}
    folder = thumbnails_folder(item.output)
    made = _style_thumbnails(item, output_dir)
    for names, load in _groups(item, video):
        paths = {name: folder / f"{name}.jpg" for name in names}
        try:
            current = {name for name, path in paths.items() if _is_current(path, output_time)}
            if len(current) < len(paths):
                current |= _remake(load(), paths)
            made.update({name: _entry(paths[name], output_dir) for name in names if name in current})
        except Exception:  # noqa: BLE001 - an unreadable input costs its thumbnail, never the item or the run
            continue
    return made


def _groups(item: PlanItem, video: dict | None) -> list[tuple[tuple[str, ...], Loader]]:
    """The thumbnails made together (a clip's three frames come from one decode) and how to load them."""
    if not item.is_video:
        return [_picture("content", item.content), _picture("result", item.output)]
    used = item.video

    def count() -> int:  # output frame n was made from frame n of the part used
        return (video or {}).get("frames_out") or probe_video(item.output).frame_count_hint

    source = _frames("in", lambda: read_frames(item.content, used.start, used.end, used.max_frames), count)
    return [source, _frames("out", lambda: read_frames(item.output), count)]


def _style_thumbnails(item: PlanItem, output_dir: Path) -> dict[str, dict]:
    """style-N: one thumbnail per painting for the whole output folder, named by its bytes,
    so ten thousand photos in one style load and shrink the painting once, not each time."""
    made = {}
    for number, style in enumerate(item.styles, start=1):
        path = output_dir / THUMBS / STYLES / f"{file_digest(Path(style.image))[:24]}.jpg"
        try:
            if not path.is_file():
                _remake({"style": load_image(style.image)}, {"style": path})
            made[f"style-{number}"] = _entry(path, output_dir)
        except Exception:  # noqa: BLE001 - an unreadable painting costs its thumbnail, never the item or the run
            continue
    return made


def _picture(name: str, path: Path) -> tuple[tuple[str, ...], Loader]:
    return (name,), lambda: {name: load_image(path)}  # as stylized: orientation, 16-bit and alpha handled


def _frames(side: str, frames: Callable[[], Iterator[np.ndarray]], count: Callable[[], int]) -> tuple[tuple[str, ...], Loader]:
    names = tuple(f"{side}-{at}" for at in FRAMES)
    return names, lambda: {f"{side}-{at}": picture for at, picture in _first_middle_last(frames(), count()).items()}


def _first_middle_last(frames: Iterator[np.ndarray], count: int) -> dict[str, Image.Image]:
    """Frames 0, (count - 1) // 2 and count - 1 in one pass; the last decoded, should there be fewer."""
    picked, last = {}, None
    for index, pixels in enumerate(itertools.islice(frames, count)):
        if index == 0:
            picked["first"] = Image.fromarray(pixels)
        if index == (count - 1) // 2:
            picked["middle"] = Image.fromarray(pixels)
        last = pixels
    if last is not None:
        picked["last"] = Image.fromarray(last)
    return picked


def _remake(pictures: dict[str, Image.Image], paths: dict[str, Path]) -> set[str]:
    for name, picture in pictures.items():
        picture.thumbnail((EDGE, EDGE), Image.Resampling.LANCZOS)  # never enlarges
        save_image(picture, paths[name], quality=QUALITY, durable=False)  # remade if a crash loses it
    return set(pictures)


def _is_current(path: Path, output_time: int) -> bool:
    """Made since the output was: a rerun that replaced the output makes it stale."""
    try:
        return path.stat().st_mtime_ns >= output_time
    except OSError:
        return False


def _entry(path: Path, output_dir: Path) -> dict:
    height, width = displayed_size(path)
    return {"path": path.relative_to(output_dir).as_posix(), "width": width, "height": height}
