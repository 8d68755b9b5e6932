"""stylize: the command line. It parses, calls the library in `pipeline/`, and prints."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.batch.events import RunEvents
from pipeline.batch.signals import Interrupted, stop_on_signals
from pipeline.errors import EXIT_ITEMS_FAILED, EXIT_USAGE, InputError, StylizeError
from pipeline.media.files import printable
from pipeline.settings import Style, StyleSettings, VideoSettings, settings_from

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Neural style transfer for photos and video, from a YAML manifest.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
DEFAULTS = StyleSettings()
VIDEO_DEFAULTS = VideoSettings()
LOSS_EVERY = 10
SHOWN_PROBLEMS = 100  # validate lists this many; a generated manifest gone wrong can hold hundreds of thousands


def _default(name: str) -> str:
    return f"[default: {getattr(DEFAULTS, name)}]"


# Options shared by `image` and `video`; defaults shown are the library's.
StyleSpecs = Annotated[list[str], typer.Option("--style", "-s", help="style image, PATH or PATH:WEIGHT; repeat to blend")]
Size = Annotated[Optional[int], typer.Option(help=f"long edge in pixels {_default('size')}")]
Seed = Annotated[Optional[int], typer.Option(help=f"random seed {_default('seed')}")]
Device = Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda, cuda:N {_default('device')}")]
Weights = Annotated[Optional[str], typer.Option(help=f"caffe, torchvision or a state dict path {_default('weights')}")]
Precision = Annotated[Optional[str], typer.Option(help=f"fp32, mixed, bf16 or auto (mixed on CUDA) {_default('precision')}")]
Compile = Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="torch.compile the network (long GPU runs) [default: off]")]
ContentWeight = Annotated[Optional[float], typer.Option(help=f"{_default('content_weight')}")]
StyleWeight = Annotated[Optional[float], typer.Option(help=f"experts: the style term's weight at the default strength {_default('style_weight')}")]
Strength = Annotated[Optional[float], typer.Option(help=f"how much of the painting, 0 to 1; the same look across paintings and sizes {_default('strength')}")]
PreserveColor = Annotated[Optional[str], typer.Option(help=f"none, luminance or histogram {_default('preserve_color')}")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="only errors and the result")]
Preset = Annotated[Optional[str], typer.Option(help="preview, default or hq (configs/presets): its settings, under the options given")]


class Display(RunEvents):
    """Rich bars on a terminal; plain timestamped lines otherwise, so cron logs stay readable."""

    def __init__(self, quiet: bool = False, verbose: bool = False):
        self.quiet, self.verbose = quiet, verbose
        self.bars = None
        if sys.stderr.isatty() and not quiet:
            self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True)
        self.items_bar = self.steps_bar = self.steps_key = self.frames_bar = None

    def __enter__(self):
        if self.bars:
            self.bars.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bars:
            self.bars.__exit__(*exc)

    def log(self, message: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        message = printable(message)  # names hold brackets, newlines and bytes that are not UTF-8
        if self.bars:
            self.bars.console.print(message, markup=False)
        else:
            err.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", markup=False)

    # RunEvents
    def planned(self, items) -> None:
        todo = sum(not p.done for p in items)
        self.log(f"plan: {len(items)} item(s), {todo} to run, {len(items) - todo} already done")
        for p in items if self.verbose else []:
            self.log(f"  {'done' if p.done else 'run '} {p.item.job}: {p.item.content.name} x {p.item.style_label} -> {p.item.output}")
        if self.bars and todo:
            self.items_bar = self.bars.add_task("items", total=todo, note="")

    def item_started(self, position: int, total: int, item) -> None:
        self.log(f"[{position}/{total}] {item.job}: {item.content.name} x {item.style_label}")

    def item_finished(self, record) -> None:
        if record.status == "failed":
            self.log(f"  failed: {record.error}", always=True)
        else:
            self.log(f"  {record.status}: {record.output} ({record.seconds:.1f} s, {_work_done(record)})")
        if self.items_bar is not None:
            self.bars.advance(self.items_bar)
        if self.frames_bar is not None:
            self.bars.remove_task(self.frames_bar)
            self.frames_bar = None

    def note(self, message: str) -> None:
        self.log(message, always=True)

    def video_progress(self, p) -> None:
        left = max(p.frames_hint - p.frame, 0) / p.frames_per_second if p.frames_per_second else 0
        note = f"{p.frames_per_second:.2f} frames/s, ~{left:.0f} s left" + (f" in pass {p.pass_number}/{p.passes}" if p.passes > 1 else "")
        if self.bars:
            if self.frames_bar is None:
                self.frames_bar = self.bars.add_task("frames", total=p.frames_hint or None, note=note)
            self.bars.update(self.frames_bar, completed=p.frame, note=note)
        elif self.verbose or p.frame % 10 == 0 or p.frame == p.frames_hint:
            self.log(f"  frame {p.frame}/~{p.frames_hint} {note}")

    def training_progress(self, p) -> None:
        losses = ", ".join(f"{name} {value:.4g}" for name, value in p.losses.items())
        left = f", ~{p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
        if self.bars:
            if self.steps_bar is None:
                self.steps_bar = self.bars.add_task("training", total=p.steps, completed=p.resumed_from, note="")
            self.bars.update(self.steps_bar, completed=p.step, note=losses)
        elif p.step == p.steps or p.step % 50 == 0 or p.step == p.resumed_from + 1:
            self.log(f"step {p.step}/{p.steps or '?'} {losses} ({p.elapsed:.0f} s{left})")

    def progress(self, p) -> None:
        label = f"scale {p.level + 1}/{p.levels}" + (f" tile {p.tile + 1}/{p.tiles}" if p.tiles > 1 else "")
        # Reading the loss waits for the GPU, so it is read every LOSS_EVERY steps, not every step.
        fresh_loss = p.iteration in (1, p.iterations) or p.iteration % LOSS_EVERY == 0
        if self.bars:
            if self.steps_key != (p.level, p.tile) or self.steps_bar is None:
                if self.steps_bar is not None:
                    self.bars.remove_task(self.steps_bar)
                self.steps_key, self.steps_bar = (p.level, p.tile), self.bars.add_task(label, total=p.iterations, note="")
            note = {"note": f"loss {p.losses['total']:.4g}"} if fresh_loss else {}
            self.bars.update(self.steps_bar, completed=p.iteration, **note)
        elif p.iteration == p.iterations or p.iteration % max(1, p.iterations // (20 if self.verbose else 4)) == 0:
            self.log(f"  {label} step {p.iteration}/{p.iterations} loss {p.losses['total']:.4g}")


def _parse_style(spec: str) -> Style:
    """PATH or PATH:WEIGHT."""
    path, _, weight = spec.rpartition(":")
    if path and not Path(spec).exists():
        try:
            return Style(Path(path), float(weight))
        except ValueError:
            pass
    return Style(Path(spec))


def _settings(preset: str | None = None, **options) -> StyleSettings:
    from pipeline.batch.manifest import settings_with_preset

    given = {name: value for name, value in options.items() if value is not None}
    return settings_with_preset(preset, given)



@contextlib.contextmanager
def _reported(when_interrupted: str):
    """An error as one line and its exit code; SIGTERM or Ctrl-C as one line and 143 or 130."""
    try:
        with stop_on_signals():
            yield
    except StylizeError as error:
        raise _fail(error) from None
    except Interrupted as stop:
        err.print(f"[bold red]interrupted[/] by {stop.signal_name}: {escape(when_interrupted)}")
        raise typer.Exit(stop.exit_code) from None


def _fail(error: StylizeError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(printable(str(error)))}")  # escaped: messages hold [brackets] (paths, 'stylize[ray]')
    return typer.Exit(error.exit_code)


@app.command()
def image(
    content: Annotated[Path, typer.Argument(help="photo to repaint")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the result (.jpg, .png, .webp, ...)")],
    style: Annotated[Optional[list[str]], typer.Option("--style", "-s", help="style image, PATH or PATH:WEIGHT; repeat to blend")] = None,
    model: Annotated[Optional[Path], typer.Option(help="a model from `stylize train`: its painting, in one pass instead of optimising")] = None,
    preset: Preset = None,
    size: Size = None,
    iterations: Optional[int] = typer.Option(None, help=f"steps at the first scale {_default('iterations')}"),
    scales: Optional[int] = typer.Option(None, help="coarse-to-fine levels [default: auto]"),
    refine_iterations: Optional[int] = typer.Option(None, help="steps at each later scale [default: iterations/2]"),
    tile_size: Optional[int] = typer.Option(None, help=f"optimise larger levels in tiles of this size {_default('tile_size')}"),
    tolerance: Optional[float] = typer.Option(None, help=f"early stop below this loss change per step {_default('tolerance')}"),
    seed: Seed = None,
    device: Device = None,
    precision: Precision = None,
    compile: Compile = None,
    weights: Weights = None,
    optimizer: Optional[str] = typer.Option(None, help=f"lbfgs or adam {_default('optimizer')}"),
    learning_rate: Optional[float] = typer.Option(None, help="step size [default: 1.0 lbfgs, 0.02 adam]"),
    strength: Strength = None,
    content_weight: ContentWeight = None,
    style_weight: StyleWeight = None,
    tv_weight: Optional[float] = typer.Option(None, help=f"{_default('tv_weight')}"),
    style_scale: Optional[float] = typer.Option(None, help=f"style size relative to content {_default('style_scale')}"),
    preserve_color: PreserveColor = None,
    init: Optional[str] = typer.Option(None, help=f"content, noise or an image path {_default('init')}"),
    pooling: Optional[str] = typer.Option(None, help=f"max or avg {_default('pooling')}"),
    quality: int = typer.Option(95, help="JPEG/WebP quality"),
    quiet: Quiet = False,
):
    """Stylize one image."""
    from pipeline.engine.engines import stylize_image_file

    options = {k: v for k, v in locals().items() if k in StyleSettings.model_fields}
    with _reported(f"{output} was not written"):
        if bool(style) == (model is not None):
            raise InputError("give --style (to optimise) or --model (a trained model), not both or neither")
        settings = _settings(preset, **options)
        with Display(quiet) as display:
            result = stylize_image_file(content, [_parse_style(s) for s in style or ()], output, settings, quality,
                                        display.progress, model)
    if not quiet:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        out.print(printable(f"wrote {output} ({result.image.width}x{result.image.height}) in {result.seconds:.1f} s on {result.device}, "
                            f"{result.iterations} steps" + (f", losses: {losses}" if losses else "")), markup=False)


@app.command()
def video(
    source: Annotated[Path, typer.Argument(help="clip to repaint (mp4, mov, mkv, webm, avi, gif)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the clip (.mp4, .mov, .mkv, .webm)")],
    style: Annotated[Optional[list[str]], typer.Option("--style", "-s", help="style image, PATH or PATH:WEIGHT; repeat to blend")] = None,
    model: Annotated[Optional[Path], typer.Option(help="a model from `stylize train`: its painting, each frame in one pass, no flow")] = None,
    preset: Preset = None,
    size: Size = None,
    iterations: Optional[int] = typer.Option(None, help=f"steps for the first frame {_default('iterations')}"),
    frame_iterations: Optional[int] = typer.Option(None, help=f"steps for each later frame [default: {VIDEO_DEFAULTS.frame_iterations}]"),
    temporal: Optional[bool] = typer.Option(None, "--temporal/--no-temporal", help="flow-warped warm start and temporal loss [default: on]"),
    temporal_weight: Optional[float] = typer.Option(None, help=f"[default: {VIDEO_DEFAULTS.temporal_weight}]"),
    long_term: Optional[list[int]] = typer.Option(None, "--long-term", help="also hold pixels to the nearest of these earlier frames where they were visible; repeatable, e.g. --long-term 10 --long-term 20"),
    passes: Optional[int] = typer.Option(None, help=f"passes over the clip, alternating direction; each later one costs about what the first did [default: {VIDEO_DEFAULTS.passes}]"),
    photo_checks: Optional[int] = typer.Option(None, help=f"frames also stylized as photos to measure the video against [default: {VIDEO_DEFAULTS.photo_checks}]"),
    max_frames: Optional[int] = typer.Option(None, help="stop after this many frames"),
    start: Optional[float] = typer.Option(None, help="seconds into the clip to start"),
    end: Optional[float] = typer.Option(None, help="seconds into the clip to stop"),
    codec: Optional[str] = typer.Option(None, help=f"h264, h265, vp9 or prores [default: {VIDEO_DEFAULTS.codec}]"),
    crf: Optional[int] = typer.Option(None, help=f"quality, lower is better [default: {VIDEO_DEFAULTS.crf}]"),
    seed: Seed = None,
    device: Device = None,
    precision: Precision = None,
    compile: Compile = None,
    weights: Weights = None,
    strength: Strength = None,
    style_weight: StyleWeight = None,
    content_weight: ContentWeight = None,
    preserve_color: PreserveColor = None,
    quiet: Quiet = False,
):
    """Stylize one clip without flicker; keeps its frame rate and sound. Resumes if interrupted."""
    from pipeline.video.stylize import stylize_video
    from pipeline.video.summary import holding_up

    given = {k: v for k, v in locals().items() if v is not None}
    with _reported("the frames done are kept beside the output; the same command resumes from there"):
        if bool(style) == (model is not None):
            raise InputError("give --style (to optimise) or --model (a trained model), not both or neither")
        settings = _settings(preset, **{k: v for k, v in given.items() if k in StyleSettings.model_fields})
        video_settings = settings_from({k: v for k, v in given.items() if k in VideoSettings.model_fields}, "option", VideoSettings)
        with Display(quiet) as display:
            result = stylize_video(source, [_parse_style(s) for s in style or ()], output, settings, video_settings,
                                   display.video_progress, model)
    if not quiet:
        ratio = (f", warping error {result.warping_error_output:.3g} vs the input's {result.warping_error_input:.3g} "
                 f"(flicker ratio {result.flicker_ratio:.2f})") if result.flicker_ratio is not None else ""
        out.print(printable(f"wrote {output}: {result.frames_out} frames at {result.fps_out} fps, audio {'kept' if result.audio_kept else 'none'}, "
                  f"{result.seconds_per_frame:.2f} s/frame{ratio}"), markup=False)
        if result.flicker_ratio_independent is not None:
            out.print(f"flicker ratio along an independent flow: {result.flicker_ratio_independent:.2f}", markup=False)
        for part in holding_up(result.as_report()):
            out.print(part, markup=False)
        for flag in result.flags:
            out.print(printable(f"warning: {output.name}: {flag}"), markup=False)


@app.command()
def train(
    style: StyleSpecs,
    on: Annotated[list[str], typer.Option("--on", help="photo folders, globs or clips to learn from (a clip: frames from all of it); repeatable")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the model file to write (.safetensors)")],
    size: int = typer.Option(128, min=32, max=1024, help="training crops' edge in pixels"),
    picture_size: Optional[int] = typer.Option(None, min=32, max=8192, help="long edge of the photos and frames the model is made for: strokes are sized for it [default: 2.5 x --size]"),
    design: str = typer.Option("lean", help="network design: lean (real time on a CPU) or johnson (Johnson et al. 2016, for comparison)"),
    steps: Optional[int] = typer.Option(None, min=1, max=10_000_000, help="stop after this many steps [default: 2000, unless --minutes]"),
    minutes: Optional[float] = typer.Option(None, min=0.01, max=100_000, help="stop after this much training time (across resumes)"),
    strength: Strength = None,
    seed: int = typer.Option(0, help="random seed: the same seed and material give the same model"),
    device: Device = None,
    weights: Weights = None,
    quiet: Quiet = False,
):
    """Train a fast model of a painting on your own photos or clip; rerun the same command to resume."""
    from pipeline.engine.training import TrainingOptions, train_model

    given = {k: v for k, v in {"strength": strength, "device": device, "weights": weights}.items() if v is not None}
    with _reported("a checkpoint is kept beside the model; the same command resumes from it"):
        settings = _settings(None, **given)
        options = TrainingOptions(size=size, picture_edge=picture_size, steps=steps, minutes=minutes, seed=seed, design=design)
        with Display(quiet) as display:
            result = train_model([_parse_style(s) for s in style], on, output, settings, options, display.training_progress)
    if not quiet:
        resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
        out.print(printable(f"wrote {output}: {result.info.steps} steps in {result.info.seconds:.0f} s on {result.info.device}{resumed}"),
                  markup=False)


@app.command()
def run(
    manifest: Path = typer.Argument(..., help="YAML manifest"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and stop"),
    force: bool = typer.Option(False, "--force", help="redo items whose output is already current"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="run only this job (repeatable)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="list every planned item and more progress"),
    batch_size: Optional[int] = typer.Option(None, min=1, help="photos optimised together [default: from free GPU memory; 1 on CPU]"),
    backend: Optional[str] = typer.Option(None, help="local (this process) or ray (a Ray cluster) [default: the manifest's backend, else local]"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster HOST:PORT [default: manifest's ray_address, RAY_ADDRESS, else a local cluster]"),
    workers: Optional[int] = typer.Option(None, min=1, help="Ray workers [default: one per GPU; on CPUs one per 2 CPUs]"),
):
    """Stylize everything a manifest lists; skips outputs that are already current."""
    from pipeline.batch.runner import run_manifest

    with _reported("items in flight are recorded as interrupted in report.json; run again to finish the rest"):
        with Display(quiet, verbose or dry_run) as display:  # a dry run lists every item
            outcome = run_manifest(manifest, display, only=only, force=force, dry_run=dry_run, batch_size=batch_size,
                                   backend=backend, ray_address=ray_address, workers=workers)
    report = outcome.report
    if report is None:
        return
    _print_summary(report)
    if report.failed:
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def validate(manifest: Path = typer.Argument(..., help="YAML manifest")):
    """Check a manifest without running it: schema, settings, presets, files, output folder."""
    from pipeline.batch.plan import validate_manifest

    try:
        problems = validate_manifest(manifest)
    except StylizeError as error:
        raise _fail(error) from None
    for problem in problems[:SHOWN_PROBLEMS]:
        err.print(f"[bold red]error:[/] {escape(printable(problem))}")  # escaped: a key such as [/x] is not markup
    if len(problems) > SHOWN_PROBLEMS:
        err.print(f"[bold red]error:[/] {escape(printable(str(manifest)))}: and {len(problems) - SHOWN_PROBLEMS:,} more problems")
    if problems:
        raise typer.Exit(EXIT_USAGE)
    out.print(printable(f"{manifest}: ok"), markup=False)


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="address to listen on [default: 127.0.0.1]; any other lets other machines use this one"),
    port: int = typer.Option(0, min=0, max=65535, help="port [default: a free one, printed]"),
    output_dir: Path = typer.Option(Path("studio"), help="where uploads and results are kept"),
    styles: Optional[Path] = typer.Option(None, help="style library: a folder of paintings [default: the bundled ones]"),
    runs: Optional[list[Path]] = typer.Option(None, "--runs", help="a run's output folder (or a folder of them) to read in the Runs tab; repeatable"),
    device: str = typer.Option(DEFAULTS.device, help="auto, cpu, cuda, cuda:N"),
    max_upload_mb: int = typer.Option(200, min=1, help="largest upload accepted"),
):
    """The studio: a local web page to try styles on a photo or clip and read runs' reports."""
    import os

    from pipeline.studio.folders import BUNDLED_STYLES, StudioFolders
    from pipeline.studio.server import serve as serve_studio

    folders = StudioFolders(output_dir, styles or BUNDLED_STYLES, tuple(runs or ()))
    chosen = host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    with _reported("the studio stopped"):
        serve_studio(folders, chosen, port, device, max_upload_mb, host_from_option=host is not None,
                     announce=lambda line: out.print(line, markup=False))


def _work_done(record) -> str:
    return f"{record.video['frames_out']} frames" if record.video else f"{record.iterations} steps"


def _outcome(record) -> str:
    """Final loss of a photo; flicker ratio (output's warping error over the input's) of a clip."""
    if record.video and record.video.get("flicker_ratio") is not None:
        flagged = len(record.video.get("flags") or [])
        return f"flicker {record.video['flicker_ratio']:.2f}" + (f", {flagged} flag{'s' * (flagged > 1)}" if flagged else "")
    return f"loss {record.losses['total']:.4g}" if record.losses else ""


def _print_summary(report) -> None:
    columns = ("job", "input", "style", "status", "seconds", "work", "result")
    rows = [tuple(map(printable, (r.job, Path(r.input).name, r.style, r.status, f"{r.seconds:.1f}", _work_done(r), _outcome(r))))
            for r in report.items]
    if out.is_terminal:
        table = Table(title=printable(f"{report.output_dir / 'report.json'}"), show_edge=False)
        for column in columns:
            table.add_column(column)
        for row in rows:
            colour = {"done": "green", "skipped": "dim", "failed": "red"}.get(row[3], "yellow")
            table.add_row(*map(Text, row[:3]), Text(row[3], style=colour), *row[4:])
        out.print(table)
    else:  # a log file: whole names, one item a line, however wide
        out.print(printable(f"{report.output_dir / 'report.json'}"), markup=False)
        for row in [columns, *rows]:
            out.print("  ".join(row), markup=False, overflow="ignore", crop=False)
    for record in report.items:
        for flag in (record.video or {}).get("flags") or []:
            out.print(printable(f"warning: {Path(record.output).name}: {flag}"), markup=False)
    totals = report.totals()
    out.print(f"{totals['done']} done, {totals['skipped']} skipped, {totals['failed']} failed in {totals['seconds']:.1f} s")


@app.command()
def info(
    model: Annotated[Optional[Path], typer.Argument(metavar="MODEL", help="a trained model file (.safetensors): show what it says about itself instead")] = None,
    device: str = typer.Option(DEFAULTS.device, help="device to check"),
    weights: str = typer.Option(DEFAULTS.weights, help="weights source to check"),
):
    """Show the device, library versions, weights file and ffmpeg that runs will use; or, given MODEL, that model's metadata."""
    if model is not None:
        from pipeline.engine.model_file import describe_model

        try:
            described = describe_model(model)
        except StylizeError as error:
            raise _fail(error) from None
        for key, value in described.items():  # names come from the file: printed as text, never as markup
            out.print(printable(f"{key + ':':15} {value}"), markup=False)
        return
    from pipeline.engine.environment import environment_report

    try:
        report = environment_report(device, weights)
    except StylizeError as error:
        raise _fail(error) from None
    for key, value in report.items():
        out.print(f"{key + ':':15} {value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
