"""report.html: rendered from the report's data alone, written beside report.json after every
item, with thumbnails made once and kept in a hidden folder beside each output."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from PIL import Image

from common import CLIP, REPO, STARRY, invoke
from browser import screenshot
from pipeline.batch.plan import PlanItem
from pipeline.batch.report import ItemRecord, RunReport
from pipeline.batch.report_html import render_report
from pipeline.batch.thumbnails import STYLES, make_thumbnails, thumbnails_folder
from pipeline.media.files import walk_files
from pipeline.settings import Style, StyleSettings

ODD = 'cat #1 50% <b>&"q\''  # a stem needing both URL quoting and HTML escaping
CLIP_THUMBS = {"style-1", "in-first", "in-middle", "in-last", "out-first", "out-middle", "out-last"}


class Tags(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def thumb(path: str) -> dict:
    return {"path": path, "width": 256, "height": 170}


def hand_made_report(out: Path) -> RunReport:
    report = RunReport("night <1>.yaml", out)
    photo = ItemRecord("stills", f"/in/{ODD}.jpg", "starry_night", str(out / f"stills/{ODD}__starry_night.jpg"), "done",
                       3.2, 30, {"content": 1.5, "style": 20.25}, device="cpu",
                       thumbnails={name: thumb(f"stills/.thumbs/{ODD}__starry_night.jpg/{name}.jpg") for name in ("content", "style-1", "result")})
    clip = ItemRecord("clips", "/in/walk.mp4", "starry_night", str(out / "clips/walk__starry_night.mp4"), "skipped",
                      video={"frames_out": 36, "fps_out": "1501/50", "duration_out": 1.2, "audio_kept": True,
                             "seconds_per_frame": 2.5, "flicker_ratio": 0.9134},
                      thumbnails={name: thumb(f"clips/.thumbs/walk__starry_night.mp4/{name}.jpg") for name in CLIP_THUMBS})
    failed = ItemRecord("stills", "/in/broken <x>.jpg", "starry_night", str(out / "stills/broken <x>__starry_night.jpg"),
                        "failed", error="/in/broken <x>.jpg: corrupt or truncated image")
    stopped = ItemRecord("clips", "/in/long.mp4", "starry_night", str(out / "clips/long__starry_night.mp4"),
                         "interrupted", error="stopped by SIGTERM")
    report.items = [photo, clip, failed, stopped]
    return report


def test_page_lists_failures_first_escapes_every_name_and_links_relatively(tmp_path):
    page = render_report(hand_made_report(tmp_path / "out").as_dict())
    assert "running…" in page
    for name, value in (("items", 4), ("done", 1), ("skipped", 1), ("failed", 1), ("interrupted", 1)):
        assert f'<dt>{name}</dt><dd>{value}</dd>' in page
    assert page.index("corrupt or truncated") < page.index("stopped by SIGTERM") < page.index('<section class="job"')
    assert "broken &lt;x&gt;.jpg" in page and "night &lt;1&gt;.yaml" in page
    assert "<b>&" not in page and "<x>" not in page  # nothing a name holds becomes markup
    assert 'class="flicker">flicker ratio 0.91<' in page
    assert "30 steps" in page and "style 20.2" in page and "30.02 fps" in page and "audio kept" in page
    assert "http" not in page and "<script" not in page  # offline, self-contained
    tags = Tags(page).tags
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert len(images) == 3 + len(CLIP_THUMBS)
    assert all(attrs["width"] == "256" and attrs["height"] == "170" and attrs["alt"] for attrs in images)
    links = [attrs["href"] for tag, attrs in tags if tag == "a"] + [attrs["src"] for attrs in images]
    assert all(not urlparse(link).scheme and not link.startswith("/") for link in links), links
    quoted = "stills/cat%20%231%2050%25%20%3Cb%3E%26%22q%27__starry_night.jpg"
    assert quoted in links and unquote(quoted) == f"stills/{ODD}__starry_night.jpg"


def test_the_studio_links_as_it_likes_and_a_finished_run_says_when(tmp_path):
    report = hand_made_report(tmp_path / "out")
    report.finish()
    page = render_report(report.as_dict(), href=lambda path: "/runs/7/file=" + path)
    assert "running…" not in page and f"finished {report.finished}" in page
    links = [attrs.get("href") or attrs.get("src") for tag, attrs in Tags(page).tags if tag in ("a", "img")]
    assert links and all(link.startswith("/runs/7/file=") for link in links)


def test_unreadable_inputs_cost_their_thumbnails_only(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    output = tmp_path / "out/a/x__starry_night.jpg"
    output.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), "red").save(output)
    item = PlanItem("a", broken, (Style(tmp_path / "gone.jpg"), Style(STARRY)), output, StyleSettings(), 95)
    made = make_thumbnails(item, tmp_path / "out")
    assert set(made) == {"style-2", "result"}
    assert made["result"] == {"path": "a/.thumbs/x__starry_night.jpg/result.jpg", "width": 64, "height": 48}  # never enlarged
    assert make_thumbnails(replace(item, output=tmp_path / "out/a/missing.jpg"), tmp_path / "out") == {}


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """A real run: a photo with an awkward name, a corrupt photo, and three frames of a real clip."""
    root = tmp_path_factory.mktemp("night")
    photos = root / "photos"
    photos.mkdir()
    Image.open(REPO / "samples/photos/chelsea.jpg").resize((48, 32)).save(photos / f"{ODD}.jpg")
    (photos / "broken.jpg").write_bytes((REPO / "samples/photos/coffee.jpg").read_bytes()[:300])
    manifest = root / "m.yaml"
    manifest.write_text(f"output_dir: out\ndefaults: {{size: 32, iterations: 2, device: cpu}}\njobs:\n"
                        f"  - name: stills\n    input: {photos}\n    style: {STARRY}\n"
                        f"  - name: clips\n    input: {CLIP}\n    style: {STARRY}\n"
                        f"    video: {{max_frames: 3, frame_iterations: 2}}\n")
    assert rerun(manifest).exit_code == 1  # the broken photo
    return manifest


def rerun(manifest: Path):
    return invoke("run", manifest, "--quiet")


@pytest.mark.browser
def test_report_opens_from_disk_failure_first_every_thumbnail_loaded(night, page):
    out = night.parent / "out"
    page.goto((out / "report.html").as_uri())
    screenshot(page, "report")
    first = page.locator("section").first
    assert "problems" in first.get_attribute("class")
    assert "broken.jpg" in first.inner_text() and "corrupt or truncated" in first.inner_text()
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) == 3 + len(CLIP_THUMBS) and all(width > 0 for _, width in images), images
    assert re.fullmatch(r"flicker ratio \d+\.\d\d \(independent flow: \d+\.\d\d\)", page.locator(".flicker").inner_text())
    for link in page.evaluate("[...document.querySelectorAll('figure.result a, figure.out-last a')].map(a => a.href)"):
        assert Path(unquote(urlparse(link).path)).is_file(), link  # the quoted links reach the outputs


def test_thumbnails_are_small_made_once_and_remade_for_a_newer_output(night):
    out = night.parent / "out"
    items = {Path(i["output"]).name: i for i in json.loads((out / "report.json").read_text())["items"]}
    photo, clip = items[f"{ODD}__starry_night.jpg"], items["realshort__starry_night.mp4"]
    assert set(photo["thumbnails"]) == {"content", "style-1", "result"} and set(clip["thumbnails"]) == CLIP_THUMBS
    thumbs = sorted(out.rglob(".thumbs/*/*.jpg"))
    assert len(thumbs) == 2 + len(CLIP_THUMBS) and all(path.stat().st_size < 60_000 for path in thumbs)  # one painting, shared
    assert not [path for path in walk_files(out, recursive=True) if ".thumbs" in path.parts]  # no later manifest sees them
    made = {path: path.stat().st_mtime_ns for path in thumbs}

    assert rerun(night).exit_code == 1
    assert {item["status"] for item in json.loads((out / "report.json").read_text())["items"]} == {"skipped", "failed"}
    assert {path: path.stat().st_mtime_ns for path in thumbs} == made

    photo_output, clip_output = Path(photo["output"]), Path(clip["output"])
    os.utime(photo_output, ns=(max(made.values()) + 1,) * 2)  # as if a rerun had replaced it
    shutil.rmtree(thumbnails_folder(clip_output))  # as if made before thumbnails existed
    assert rerun(night).exit_code == 1
    assert all(path.is_file() for path in thumbs)
    assert all(path.stat().st_mtime_ns != made[path] for path in thumbs if STYLES not in path.parts)  # the painting did not change
