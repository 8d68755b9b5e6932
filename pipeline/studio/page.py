"""The studio's page (Gradio): the Image, Video and Runs tabs. It parses what the user gave,
calls `jobs`, and shows the snapshots it streams; the work happens in the library."""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path

import gradio as gr
from PIL import Image, UnidentifiedImageError

from ..errors import StylizeError
from ..settings import DEFAULT_STRENGTH, Style, VideoSettings
from .commands import Recipe, preset_numbers
from .folders import REPORT_HTML, StudioFolders
from .jobs import ClipOutcome, LiveJob, PhotoOutcome, Snapshot, stylize_clip, stylize_photo

PRESETS = ("preview", "default", "hq")
COLOUR_MODES = ("none", "luminance", "histogram")
DEVICE_QUEUE = "device"  # every stylization shares one slot: one job at a time on the GPU
TITLE = "stylize studio"


def build_page(folders: StudioFolders, device: str = "auto") -> gr.Blocks:
    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"# {TITLE}\nRepaint a photo or a clip in the style of paintings (Gatys et al.; "
                    "video steadied by optical flow, Ruder et al.). One job runs at a time; others wait their turn.")
        with gr.Tab("Image", id="image"):
            _image_tab(folders, device)
        with gr.Tab("Video", id="video"):
            _video_tab(folders, device)
        with gr.Tab("Runs", id="runs"):
            _runs_tab(folders)
    return page


class _StyleControls:
    """Paintings from the library (click a thumbnail to add it) or uploaded, each with a
    blend weight. The table names styles; only the server maps names to files, so the page
    can never point a job at a path of its choosing."""

    def __init__(self, folders: StudioFolders, prefix: str):
        self.folders = folders
        library = {path.stem: str(path) for path in folders.library()}
        self.known = gr.State(library)  # name -> file: the library and this page's uploads
        with gr.Group():
            self.gallery = gr.Gallery([(path, name) for name, path in library.items()], label="Style library: click to add",
                                      columns=6, height=170, allow_preview=False, elem_id=f"{prefix}-library")
            self.upload = gr.File(file_count="multiple", file_types=["image"], label="…or upload paintings", height=90,
                                  elem_id=f"{prefix}-style-upload")
            self.table = gr.Dataframe([[next(iter(library))] + [1.0]] if library else None, headers=["style", "weight"],
                                      datatype=["str", "number"], type="array", column_count=2, interactive=True,
                                      label="Styles and blend weights (weight 0 leaves one out)", elem_id=f"{prefix}-styles")
            clear = gr.Button("Clear styles", size="sm")
        self.gallery.select(self._add_library, [self.table, self.known], self.table)
        self.upload.upload(self._add_uploads, [self.upload, self.table, self.known], [self.table, self.known, self.upload])
        clear.click(lambda: [], None, self.table)

    @staticmethod
    def _add_library(rows, known, selected: gr.SelectData):
        name = list(known)[selected.index]
        return _rows(rows) + [[name, 1.0]]

    def _add_uploads(self, files, rows, known):
        known = dict(known)
        added = []
        for file in files or []:
            kept = self.folders.keep_upload(file)
            name = _free_name(Path(file).stem, str(kept), known)
            known[name] = str(kept)
            added.append([name, 1.0])
        return _rows(rows) + added, known, None

    @staticmethod
    def styles(rows, known) -> tuple[Style, ...]:
        chosen = []
        for name, weight in _rows(rows):
            if name not in known:
                raise _problem(f"style {name!r} is not in the library or the uploads: pick or upload it again")
            if weight is None or float(weight) < 0:
                raise _problem(f"style {name!r}: the weight must be a number, 0 or more")
            if float(weight) > 0:
                chosen.append(Style(Path(known[name]), float(weight)))
        if not chosen:
            raise _problem("choose at least one style: click a painting in the library or upload one")
        return tuple(chosen)


def _free_name(stem: str, path: str, known: dict) -> str:
    """The upload's own name, numbered when another file already has it."""
    names = (stem if n == 0 else f"{stem}-{n}" for n in range(len(known) + 1))
    return next(name for name in names if known.get(name, path) == path)


def _rows(rows) -> list[list]:
    """The table's non-empty rows (Gradio hands an empty table over as one blank row)."""
    return [list(row[:2]) for row in (rows or []) if row and row[0] not in (None, "")]


def _settings_controls(prefix: str):
    with gr.Row():
        preset = gr.Radio(list(PRESETS), value="preview", label="Preset", elem_id=f"{prefix}-preset")
        colour = gr.Radio(list(COLOUR_MODES), value="none", label="Keep the photo's colours", elem_id=f"{prefix}-colour")
    with gr.Row():
        # The preset's own numbers, replaced when the preset changes (Gradio shows a blank box as a red "0").
        preset_size, preset_steps = preset_numbers(preset.value)
        size = gr.Number(preset_size, precision=0, minimum=16, label="Size: long edge in px", elem_id=f"{prefix}-size")
        steps = gr.Number(preset_steps, precision=0, minimum=1, label="Steps", elem_id=f"{prefix}-steps")
        seed = gr.Number(0, precision=0, label="Seed", elem_id=f"{prefix}-seed")
    strength = gr.Slider(0, 1, value=DEFAULT_STRENGTH, step=0.05, label="Strength: how much of the painting (0 a light touch, 1 the most)",
                         elem_id=f"{prefix}-strength")
    preset.change(preset_numbers, preset, [size, steps])
    return [preset, colour, size, steps, seed, strength]


def _recipe(styles, device, preset, colour, size, steps, seed, strength, frame_iterations=None) -> Recipe:
    return Recipe(styles, preset, _count(size), _count(steps), colour, int(seed or 0), device, _count(frame_iterations),
                  float(strength))


def _count(value) -> int | None:
    return None if value in (None, "") else int(value)


def _problem(message: str) -> gr.Error:
    """The page's one-line message for something the user can fix: no server traceback."""
    return gr.Error(message, print_exception=False)


READABLE = "JPEG, PNG, WebP, BMP or TIFF"  # media.images.IMAGE_SUFFIXES, as people name them


def photo_input(**options) -> gr.Image:
    """gr.Image(type="filepath") whose upload is read as an image before any handler runs,
    failing with the file's own name: Gradio's own failure names the component's index and
    the cache path, and logs a traceback. (Not a subclass: Gradio writes a .pyi beside the
    module of every component class.)"""
    photo = gr.Image(type="filepath", **options)
    photo.preprocess = partial(_read_photo, photo.preprocess)  # the one call Gradio makes on an input's payload
    return photo


def _read_photo(preprocess, payload):
    if payload is None:
        return None
    name = Path(payload.orig_name or payload.path or "the upload").name
    if Path(name).suffix.lower() == ".svg":  # Gradio passes SVG through unread; PIL cannot read it
        raise _problem(f"{name} is not an image this studio can read: use {READABLE}")
    try:
        return preprocess(payload)
    except gr.Error:
        raise
    except Image.DecompressionBombError:
        raise _problem(f"{name} has too many pixels for this studio: downscale it first") from None
    except UnidentifiedImageError:
        raise _problem(f"{name} is not an image this studio can read: use {READABLE}") from None
    except Exception:
        raise _problem(f"{name} could not be read as an image (corrupt or truncated?): use {READABLE}") from None


def _status(snapshot: Snapshot) -> str:
    return (f'<div class="job-status"><progress max="1" value="{snapshot.fraction:.3f}"></progress>'
            f"<span>{html.escape(snapshot.status)}</span></div>")


async def _stream(work):
    """A job's snapshots and outcome; errors as the page's one-line message."""
    try:
        async for update in LiveJob(work).updates():
            yield update
    except StylizeError as error:
        raise _problem(str(error)) from None


def _image_tab(folders: StudioFolders, device: str) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            content = photo_input(label="Photo", sources=["upload"], height=260, elem_id="image-content")
            styles = _StyleControls(folders, "image")
            settings = _settings_controls("image")
            with gr.Row():
                run = gr.Button("Stylize", variant="primary", elem_id="image-run")
                stop = gr.Button("Cancel", elem_id="image-cancel")
        with gr.Column(scale=1):
            status = gr.HTML(elem_id="image-status")
            result = gr.Image(label="Result", interactive=False, format="png", height=420, elem_id="image-result")
            download = gr.DownloadButton("Download", visible=False, elem_id="image-download")
            summary = gr.Markdown(elem_id="image-summary")
            command = gr.Code(label="The same from a terminal", language="shell", lines=2, wrap_lines=True, elem_id="image-command")
            job = gr.Code(label="The same as a manifest job", language="yaml", lines=6, elem_id="image-job")

    async def stylize(photo, rows, known, *chosen):
        if not photo:
            raise _problem("upload a photo first")
        recipe = _recipe(_StyleControls.styles(rows, known), device, *chosen)
        async for update in _stream(partial(stylize_photo, Path(photo), recipe, folders)):
            if isinstance(update, Snapshot):
                yield {status: _status(update), result: gr.skip() if update.preview is None else update.preview}
            elif isinstance(update, PhotoOutcome):
                yield {status: _status(Snapshot(1.0, "done")), result: str(update.output), summary: update.summary,
                       download: gr.DownloadButton(value=str(update.output), visible=True),
                       command: update.command, job: update.manifest_job}

    content.upload(lambda photo: None, content, None, show_progress="hidden")  # a photo it cannot read: said at once
    event = run.click(stylize, [content, styles.table, styles.known, *settings],
                      [status, result, download, summary, command, job], concurrency_limit=1,
                      concurrency_id=DEVICE_QUEUE, show_progress_on=[status])
    stop.click(None, None, None, cancels=[event])


def _video_tab(folders: StudioFolders, device: str) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(label="Clip", sources=["upload"], height=260, elem_id="video-clip")
            styles = _StyleControls(folders, "video")
            settings = _settings_controls("video")
            frame_steps = gr.Number(VideoSettings().frame_iterations, precision=0, minimum=0, label="Steps for each frame after the first",
                                    elem_id="video-frame-steps")
            with gr.Row():
                run = gr.Button("Stylize", variant="primary", elem_id="video-run")
                stop = gr.Button("Cancel", elem_id="video-cancel")
        with gr.Column(scale=1):
            status = gr.HTML(elem_id="video-status")
            strip = gr.Gallery(label="Latest frames", columns=6, height=140, allow_preview=False, elem_id="video-strip")
            result = gr.Video(label="Result", interactive=False, elem_id="video-result")
            summary = gr.Markdown(elem_id="video-summary")
            command = gr.Code(label="The same from a terminal", language="shell", lines=2, wrap_lines=True, elem_id="video-command")
            job = gr.Code(label="The same as a manifest job", language="yaml", lines=6, elem_id="video-job")

    async def stylize(source, rows, known, *chosen):
        if not source:
            raise _problem("upload a clip first")
        recipe = _recipe(_StyleControls.styles(rows, known), device, *chosen)
        async for update in _stream(partial(stylize_clip, Path(source), recipe, folders)):
            if isinstance(update, Snapshot):
                yield {status: _status(update), strip: gr.skip() if update.strip is None else update.strip}
            elif isinstance(update, ClipOutcome):
                yield {status: _status(Snapshot(1.0, "done")), result: str(update.output), summary: update.summary,
                       command: update.command, job: update.manifest_job}

    event = run.click(stylize, [clip, styles.table, styles.known, *settings, frame_steps],
                      [status, strip, result, summary, command, job], concurrency_limit=1,
                      concurrency_id=DEVICE_QUEUE, show_progress_on=[status])
    stop.click(None, None, None, cancels=[event])


def _runs_tab(folders: StudioFolders) -> None:
    def choices():
        return [(str(path), index) for index, path in enumerate(folders.run_folders())]

    def show(run):
        if run is None:
            return "<p>No run chosen. Start the studio with <code>--runs DIR</code> to read nightly runs here.</p>"
        path = folders.run_folders()[int(run)]
        if not (path / REPORT_HTML).is_file():
            return f"<p>{html.escape(str(path))} has no {REPORT_HTML} yet: it is written after each item of a run.</p>"
        return f'<iframe id="run-report" src="/runs/{int(run)}/{REPORT_HTML}" style="width:100%;height:80vh;border:0"></iframe>'

    listed = choices()
    first = listed[0][1] if listed else None  # shown from the start
    with gr.Row():
        run = gr.Dropdown(listed, value=first, label="Run folder", elem_id="runs-choice", scale=4)
        refresh = gr.Button("Refresh", scale=1)
    report = gr.HTML(show(first), elem_id="runs-report")
    run.change(show, run, report)
    refresh.click(lambda: gr.Dropdown(choices=choices()), None, run)
