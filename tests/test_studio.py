"""The studio (`stylize serve`): its pieces without a browser, then the page itself driven
in a real browser (Debian chromium through Playwright) against a server on a free port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gradio as gr
import pytest
import yaml
from gradio.data_classes import ImageData
from PIL import Image

from browser import screenshot
from clips import frame_count, pan_frames, stream_durations, write_clip
from common import MATISSE, PHOTO, REPO, STARRY
from pipeline.batch.plan import PlanItem, validate_manifest
from pipeline.batch.report import ItemRecord, RunReport
from pipeline.batch.thumbnails import make_thumbnails
from pipeline.errors import InputError
from pipeline.media.decode import probe_video
from pipeline.settings import Style, StyleSettings
from pipeline.studio.commands import Recipe, image_command, manifest_job, preset_numbers
from pipeline.studio.folders import StudioFolders, safe_name
from pipeline.studio.hosts import answers_to, host_name, refusal
from pipeline.studio.jobs import LiveJob
from pipeline.studio.page import photo_input
from pipeline.studio.server import check_host


# --- without a browser ---------------------------------------------------------------

def test_the_command_and_manifest_job_shown_for_a_result_say_what_was_run(tmp_path, photo, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths outside the server's folder are shown whole
    recipe = Recipe((Style(STARRY, 2.0), Style(MATISSE, 1.0)), preset="preview", size=96, preserve_color="luminance", seed=3,
                    strength=0.8)
    command = image_command(photo, recipe, tmp_path / "out.png")
    assert command.startswith("stylize image ")
    for words in (f"{STARRY}:2", f"{MATISSE}:1", "--preset preview", "--size 96", "--preserve-color luminance", "--seed 3", "--strength 0.8",
                  "-o out.png"):  # inside it: relative
        assert words in command
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "runs"), "jobs": yaml.safe_load(manifest_job(photo, recipe))}))
    assert validate_manifest(manifest) == []
    job = yaml.safe_load(manifest.read_text())["jobs"][0]
    assert job["style"] == [{"path": str(STARRY), "weight": 2.0}, {"path": str(MATISSE), "weight": 1.0}]
    assert job["strength"] == 0.8
    assert recipe.settings().size == 96 and recipe.settings().iterations == 100  # the preset's, under the page's
    assert recipe.settings().strength == 0.8


def test_run_files_are_served_only_from_inside_the_run_folders(tmp_path):
    run = tmp_path / "run"
    (run / ".thumbs").mkdir(parents=True)
    (run / "report.json").write_text("{}")
    (run / ".thumbs" / "a.jpg").write_bytes(b"jpg")
    (tmp_path / "secret.txt").write_text("no")
    (run / "escape").symlink_to(tmp_path / "secret.txt")
    folders = StudioFolders(tmp_path / "studio", runs=(tmp_path,))  # a folder of runs
    assert folders.run_folders() == [run]
    assert folders.run_file(0, ".thumbs/a.jpg") == (run / ".thumbs" / "a.jpg").resolve()
    for outside in ("../secret.txt", str(tmp_path / "secret.txt"), "escape", ".thumbs/../../secret.txt"):
        with pytest.raises(PermissionError):
            folders.run_file(0, outside)
    with pytest.raises(FileNotFoundError):
        folders.run_file(1, "report.json")


def test_uploads_are_kept_under_the_output_folder_by_their_bytes(tmp_path, photo):
    folders = StudioFolders(tmp_path / "studio")
    kept = folders.keep_upload(photo)
    assert kept.parent == tmp_path / "studio" / "uploads" and kept.read_bytes() == photo.read_bytes()
    assert folders.keep_upload(photo) == kept
    assert safe_name("../../etc/pass wd<1>.jpg") == "pass_wd_1_.jpg"


def test_only_an_explicit_host_option_opens_the_studio_beyond_this_machine():
    check_host("127.0.0.1", from_option=False)
    check_host("::1", from_option=False)
    check_host("0.0.0.0", from_option=True)
    with pytest.raises(InputError, match="--host 0.0.0.0"):
        check_host("0.0.0.0", from_option=False)


def test_the_studio_answers_only_to_host_names_that_mean_it():
    for header in ("127.0.0.1:7860", "localhost:7860", "LocalHost.", "[::1]:7860", "[0:0:0:0:0:0:0:1]", "127.0.0.1", "localhost"):
        assert answers_to("127.0.0.1", header), header
    for header in ("evil.example.com", "evil.example.com:7860", "127.0.0.1.evil.example.com", "localhost.evil.example.com",
                   "192.168.1.5:7860", "", None):
        assert not answers_to("127.0.0.1", header), header
    assert answers_to("studio.lan", "studio.lan:7860") and answers_to("192.168.1.5", "192.168.1.5:7860")
    assert not answers_to("192.168.1.5", "evil.example.com:7860")
    assert answers_to("::", "[2001:db8::1]:7860") and answers_to("0.0.0.0", "anything.example.com")  # every address: any name
    assert host_name("[::1]:80") == "::1" and host_name("EXAMPLE.com.:80") == "example.com"
    said = refusal("127.0.0.1", "evil.example.com:7860")
    assert "not to evil.example.com" in said and "--host evil.example.com" in said
    assert "and 192.168.1.5" in refusal("192.168.1.5", "evil.example.com")


def test_a_photo_that_is_no_image_gets_a_plain_message_and_no_traceback(tmp_path, photo):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    truncated = tmp_path / "half.png"
    with Image.open(photo) as image:
        image.convert("RGBA").save(truncated)  # RGBA: Gradio converts it to RGB, reading every pixel
    truncated.write_bytes(truncated.read_bytes()[:2000])
    component = photo_input()
    for given, said in ((notes, "notes.txt is not an image this studio can read: use JPEG, PNG"),
                        (truncated, "half.png could not be read as an image")):
        with pytest.raises(gr.Error) as refused:
            component.preprocess(ImageData(path=str(given), orig_name=given.name))
        assert refused.value.message.startswith(said) and str(tmp_path) not in refused.value.message
        assert not refused.value.print_exception  # Gradio logs no traceback for it
    assert component.preprocess(ImageData(path=str(photo), orig_name=photo.name)) == str(photo)
    assert not list((REPO / "pipeline").rglob("*.pyi"))  # what Gradio writes beside a module defining a component class


def test_serve_refuses_a_public_address_that_came_from_the_environment(tmp_path):
    environment = {**os.environ, "GRADIO_SERVER_NAME": "0.0.0.0"}
    done = subprocess.run([sys.executable, str(REPO / "cli.py"), "serve", "--output-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, env=environment, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "--host 0.0.0.0" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()


def test_serve_without_gradio_says_which_extra_to_install(tmp_path):
    hide_gradio = "import sys; sys.modules['gradio'] = None; import cli; cli.main()"  # import gradio now fails
    done = subprocess.run([sys.executable, "-c", hide_gradio, "serve", "--output-dir", str(tmp_path / "s")],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip() == "error: the studio needs Gradio: pip install 'stylize[web]'"
    assert not (tmp_path / "s").exists()


def test_a_cancelled_job_stops_at_its_next_report_and_an_error_reaches_the_page():
    reports = []

    def endless(publish):
        for step in range(10_000):
            publish(step)
            reports.append(step)
            time.sleep(0.01)

    async def read_two_then_close():
        stream = LiveJob(endless).updates()
        seen = [await anext(stream), await anext(stream)]
        await stream.aclose()  # what Gradio does when the tab closes
        return seen

    assert len(_run_async(read_two_then_close())) == 2
    stopped_at = len(reports)
    time.sleep(0.1)
    assert len(reports) == stopped_at < 10_000

    def failing(publish):
        raise InputError("bad photo")

    async def drain():
        return [update async for update in LiveJob(failing).updates()]

    with pytest.raises(InputError, match="bad photo"):
        _run_async(drain())


def _run_async(coroutine):
    """asyncio.run on a thread of its own: Playwright's sync API keeps a loop running on this one."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


# --- in a browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """`stylize serve` on a free port, CPU only, with one run folder to read."""
    root = tmp_path_factory.mktemp("studio")
    runs = _a_finished_run(root / "runs")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    server = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "serve", "--device", "cpu", "--output-dir", str(root / "out"),
                               "--runs", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=root)
    url = _announced_url(server)
    yield url, root
    server.terminate()
    server.wait(timeout=30)


def _a_finished_run(folder: Path) -> Path:
    """A run folder as `stylize run` leaves it: an output, its thumbnails, report.json and report.html."""
    output = folder / "stills" / "chelsea__starry_night.jpg"
    output.parent.mkdir(parents=True)
    shutil.copy(PHOTO, output)
    item = PlanItem("stills", PHOTO, (Style(STARRY),), output, StyleSettings(), 95)
    record = ItemRecord.of(item, "done", 1.5, iterations=30, losses={"total": 1.0}, thumbnails=make_thumbnails(item, folder))
    report = RunReport("night.yaml", folder, items=[record])
    report.finish()
    return folder


def _announced_url(server: subprocess.Popen) -> str:
    line = server.stdout.readline()
    found = re.search(r"http://[^ ]+/", line)
    assert found, f"stylize serve did not start: {line}{server.stdout.read() if server.poll() is not None else ''}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            _get(found.group(0), "/")
            return found.group(0)
        except OSError:
            time.sleep(0.5)
    raise AssertionError("stylize serve never answered")


def _get(url: str, path: str) -> int:
    """The status of GET `path`, sent exactly as written (no client-side normalising of ..)."""
    return _request(url, path)[0]


def _request(url: str, path: str, headers: dict | None = None) -> tuple[int, str]:
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers=headers or {})  # a Host here replaces the one http.client would send
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace")


def _open_tab(page, url: str, tab: str) -> None:
    page.goto(url)
    page.get_by_role("tab", name=tab).click()
    page.wait_for_selector(f"#{tab.lower()}-run" if tab != "Runs" else "#runs-choice")


@pytest.mark.browser
def test_image_tab_shows_the_image_forming_then_a_result_to_download(studio, page, photo, tmp_path):
    url, _ = studio
    _open_tab(page, url, "Image")
    page.locator("#image-content input[type=file]").set_input_files(str(photo))
    page.locator("#image-style-upload input[type=file]").set_input_files(str(MATISSE))
    page.wait_for_function("document.querySelector('#image-styles').innerText.includes('woman-with-hat-matisse')")
    size_box = page.locator("#image-size input")
    assert size_box.input_value() == str(preset_numbers("preview")[0])  # the preset's own, not a red "0"
    page.locator("#image-preset label", has_text="hq").click()
    page.wait_for_function(f"document.querySelector('#image-size input').value == '{preset_numbers('hq')[0]}'")
    page.locator("#image-preset label", has_text="preview").click()
    page.wait_for_function(f"document.querySelector('#image-size input').value == '{preset_numbers('preview')[0]}'")
    size_box.fill("64")
    page.locator("#image-steps input").fill("40")
    page.locator("#image-strength input[type=number]").fill("0.8")
    page.locator("#image-strength input[type=number]").press("Enter")
    page.evaluate("""() => { window.previews = []; window.resultShown = false;
        new MutationObserver(() => {
            const img = document.querySelector('#image-result img');
            if (!img || window.resultShown) return;
            if (!window.previews.includes(img.src)) window.previews.push(img.src);
            if (document.querySelector('#image-status').innerText.includes('done')) window.resultShown = true;
        }).observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true}); }""")
    page.click("#image-run")
    page.wait_for_function("/step ([2-9]\\d|1\\d)\\//.test(document.querySelector('#image-status').innerText)"
                           " && document.querySelector('#image-result img')", timeout=120_000)  # well into the run
    screenshot(page, "studio-image")
    page.wait_for_function("document.querySelector('#image-status').innerText.includes('done')", timeout=180_000)
    previews = page.evaluate("window.previews")
    assert len(set(previews[:-1])) >= 2, f"fewer than two previews before the result: {previews}"
    with page.expect_download() as download:
        page.click("#image-download")
    saved = tmp_path / "result.png"
    download.value.save_as(saved)
    with Image.open(saved) as result:
        assert max(result.size) == 64 and result.mode == "RGB"
    command = page.locator("#image-command").inner_text()
    assert "stylize image" in command and "--size 64" in command and "--strength 0.8" in command and "woman-with-hat-matisse" in command


@pytest.mark.browser
def test_video_tab_offers_the_clip_with_its_frames_rate_and_sound(studio, page, tmp_path):
    url, root = studio
    clip = write_clip(tmp_path / "pan.mp4", pan_frames(8), audio=True)
    _open_tab(page, url, "Video")
    page.locator("#video-clip input[type=file]").set_input_files(str(clip))
    page.locator("#video-size input").fill("48")
    page.locator("#video-steps input").fill("8")
    page.locator("#video-frame-steps input").fill("2")
    page.wait_for_function("document.querySelector('#video-clip video')")
    page.click("#video-run")
    page.wait_for_function("document.querySelector('#video-status').innerText.includes('done')", timeout=240_000)
    page.wait_for_function("document.querySelector('#video-result video')")
    screenshot(page, "studio-video")
    source = page.evaluate("document.querySelector('#video-result video').src")
    offered = tmp_path / "offered.mp4"
    offered.write_bytes(page.request.get(source).body())
    given, got = probe_video(clip), probe_video(offered)
    assert frame_count(offered) == frame_count(clip) == 8
    assert got.fps == given.fps and got.has_audio
    audio_seconds = stream_durations(offered)[1]
    assert audio_seconds and abs(audio_seconds - float(8 / given.fps)) < 0.1
    assert "flicker ratio" in page.locator("#video-summary").inner_text()


@pytest.mark.browser
def test_closing_the_tab_cancels_its_job_and_frees_the_queue(studio, browser, photo):
    url, _ = studio
    first, second = browser.new_context(), browser.new_context()
    try:
        long_job = _start_image(first.new_page(), url, photo, steps=100_000)
        long_job.wait_for_function("document.querySelector('#image-status').innerText.includes('steps/s')", timeout=120_000)
        short_job = _start_image(second.new_page(), url, photo, steps=5)
        short_job.wait_for_function("document.querySelector('#image-status').innerText.includes('queue')", timeout=30_000)
        first.close()  # the tab goes away mid-job
        short_job.wait_for_function("document.querySelector('#image-status').innerText.includes('done')", timeout=120_000)
    finally:
        second.close()


def _start_image(page, url: str, photo: Path, steps: int):
    _open_tab(page, url, "Image")
    page.locator("#image-content input[type=file]").set_input_files(str(photo))
    page.locator("#image-size input").fill("32")
    page.locator("#image-steps input").fill(str(steps))
    page.wait_for_function("document.querySelector('#image-content img')")
    page.click("#image-run")
    return page


@pytest.mark.browser
def test_runs_tab_shows_a_run_report_with_its_pictures(studio, page):
    url, _ = studio
    _open_tab(page, url, "Runs")  # the first run is shown from the start
    report = page.frame_locator("#run-report")
    report.locator("img").first.wait_for()
    assert "chelsea" in report.locator("body").inner_text()
    frame = page.frame(url=re.compile(r"/runs/0/report\.html$"))
    # Pictures load one after another; under load the later ones arrive after the first.
    frame.wait_for_function("Array.from(document.images).every(img => img.complete)", timeout=30_000)
    widths = frame.evaluate("Array.from(document.images).map(img => img.naturalWidth)")
    assert widths and all(width > 0 for width in widths), widths


@pytest.mark.browser
def test_paths_outside_the_configured_folders_are_refused(studio):
    url, root = studio
    (root / "private.txt").write_text("not for the page")
    assert _get(url, "/runs/0/report.json") == 200  # inside: served
    for path in (f"/gradio_api/file={root / 'private.txt'}", "/gradio_api/file=/etc/passwd",
                 f"/gradio_api/file={REPO / 'pyproject.toml'}", "/runs/0/../private.txt",
                 "/runs/0/%2e%2e/private.txt", f"/runs/0/{root / 'private.txt'}", "/runs/1/report.json"):
        assert _get(url, path) in (403, 404), path


def test_a_host_header_naming_another_site_is_refused_with_how_to_allow_it(studio):
    url, _ = studio
    port = re.search(r":(\d+)/", url).group(1)
    for path in ("/", "/runs/0/report.json", "/gradio_api/info"):
        status, body = _request(url, path, {"Host": "evil.example.com"})
        assert status == 403 and "--host evil.example.com" in body, (path, status, body)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert _request(url, "/", {"Host": host})[0] == 200, host


@pytest.mark.browser
def test_a_file_that_is_no_photo_is_named_in_plain_words_on_upload_and_on_stylize(studio, page, tmp_path):
    url, _ = studio
    fake = tmp_path / "notes.png"  # the page accepts it by its name
    fake.write_text("not a picture")
    said = "notes.png is not an image this studio can read: use JPEG, PNG"
    _open_tab(page, url, "Image")
    page.locator("#image-content input[type=file]").set_input_files(str(fake))
    message = page.locator(".toast-body", has_text=said)
    message.wait_for()  # at once, on upload
    page.locator(".toast-close").first.click()
    message.wait_for(state="detached")
    page.click("#image-run")
    message.wait_for()  # and again when asked to stylize it
    assert "Could not preprocess" not in page.locator("body").inner_text()
