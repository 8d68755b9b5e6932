"""stylize: the command line. It parses, calls the library in `pipeline/`, and prints."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline import Style, StyleSettings, StylizeError
from pipeline.errors import EXIT_ITEMS_FAILED, InputError
from pipeline.settings import settings_from

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Neural style transfer for photos and video, from a YAML manifest.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
DEFAULTS = StyleSettings()


def _default(name: str) -> str:
    return f"[default: {getattr(DEFAULTS, name)}]"


class Display:
    """Rich bars on a terminal; plain timestamped lines otherwise (cron logs stay readable)."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.live = sys.stderr.isatty() and not quiet
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True) if self.live else None
        self.task = None

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar:
            self.bar.console.print(message)
        else:
            err.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}")

    def progress(self, p) -> None:
        label = f"scale {p.level + 1}/{p.levels}" + (f" tile {p.tile + 1}/{p.tiles}" if p.tiles > 1 else "")
        loss = f"loss {p.losses['total']:.4g}"
        if self.bar:
            key = (p.level, p.tile)
            if self.task is None or self.task[0] != key:
                if self.task is not None:
                    self.bar.remove_task(self.task[1])
                self.task = (key, self.bar.add_task(label, total=p.iterations, loss=loss))
            self.bar.update(self.task[1], completed=p.iteration, loss=loss)
        elif p.iteration == p.iterations or p.iteration % max(1, p.iterations // 5) == 0:
            self.log(f"{label} step {p.iteration}/{p.iterations} {loss}")


def _parse_style(spec: str) -> Style:
    """PATH or PATH:WEIGHT."""
    path, _, weight = spec.rpartition(":")
    if path and not Path(spec).exists():
        try:
            return Style(Path(path), float(weight))
        except ValueError:
            pass
    return Style(Path(spec))


def _settings(**options) -> StyleSettings:
    given = {name: value for name, value in options.items() if value is not None}
    return settings_from(given, "option")


def _fail(error: StylizeError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {error}")
    return typer.Exit(error.exit_code)


@app.command()
def image(
    content: Path = typer.Argument(..., help="photo to repaint"),
    style: list[str] = typer.Option(..., "--style", "-s", help="style image, PATH or PATH:WEIGHT; repeat to blend"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the result (.jpg, .png, .webp, ...)"),
    size: Optional[int] = typer.Option(None, help=f"long edge in pixels {_default('size')}"),
    iterations: Optional[int] = typer.Option(None, help=f"steps at the first scale {_default('iterations')}"),
    scales: Optional[int] = typer.Option(None, help="coarse-to-fine levels [default: auto]"),
    seed: Optional[int] = typer.Option(None, help=f"random seed {_default('seed')}"),
    device: Optional[str] = typer.Option(None, help=f"auto, cpu, cuda, cuda:N {_default('device')}"),
    weights: Optional[str] = typer.Option(None, help=f"caffe, torchvision or a state dict path {_default('weights')}"),
    optimizer: Optional[str] = typer.Option(None, help=f"lbfgs or adam {_default('optimizer')}"),
    learning_rate: Optional[float] = typer.Option(None, help="step size [default: 1.0 lbfgs, 0.02 adam]"),
    content_weight: Optional[float] = typer.Option(None, help=f"{_default('content_weight')}"),
    style_weight: Optional[float] = typer.Option(None, help=f"{_default('style_weight')}"),
    tv_weight: Optional[float] = typer.Option(None, help=f"{_default('tv_weight')}"),
    style_scale: Optional[float] = typer.Option(None, help=f"style size relative to content {_default('style_scale')}"),
    preserve_color: Optional[str] = typer.Option(None, help=f"none, luminance or histogram {_default('preserve_color')}"),
    init: Optional[str] = typer.Option(None, help=f"content, noise or an image path {_default('init')}"),
    pooling: Optional[str] = typer.Option(None, help=f"max or avg {_default('pooling')}"),
    quality: int = typer.Option(95, help="JPEG/WebP quality"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Stylize one image."""
    from pipeline import stylize_image
    from pipeline.images import save_image

    options = {k: v for k, v in locals().items() if k in StyleSettings.model_fields}
    try:
        settings = _settings(**options)
        with Display(quiet) as display:
            result = stylize_image(content, [_parse_style(s) for s in style], settings, display.progress)
        save_image(result.image, output, quality=quality)
    except StylizeError as error:
        raise _fail(error)
    if not quiet:
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        out.print(f"wrote {output} ({result.image.width}x{result.image.height}) in {result.seconds:.1f} s on {result.device}, "
                  f"{result.iterations} steps, losses: {losses}")


@app.command()
def run(
    manifest: Path = typer.Argument(..., help="YAML manifest"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Stylize everything a manifest lists."""
    from pipeline.manifest import load_manifest
    from pipeline.plan import plan, style_label
    from pipeline.run import run_items

    try:
        items = plan(load_manifest(manifest))
        with Display(quiet) as display:
            display.log(f"{len(items)} item(s) planned from {manifest}")
            outcomes = run_items(
                items,
                on_start=lambda i, item: display.log(f"[{i + 1}/{len(items)}] {item.job}: {item.content.name} x {style_label(item.styles)}"),
                on_progress=display.progress,
                on_finish=lambda o: display.log(f"  {o.status}: {o.item.output if o.status == 'done' else o.error} ({o.seconds:.1f} s)"),
            )
    except StylizeError as error:
        raise _fail(error)
    failed = [o for o in outcomes if o.status == "failed"]
    out.print(f"{len(outcomes) - len(failed)} done, {len(failed)} failed")
    for outcome in failed:
        err.print(f"[red]failed:[/] {outcome.error}")
    if failed:
        raise typer.Exit(EXIT_ITEMS_FAILED)


@app.command()
def info(
    device: str = typer.Option(DEFAULTS.device, help="device to check"),
    weights: str = typer.Option(DEFAULTS.weights, help="weights source to check"),
):
    """Show the device, library versions, weights file and ffmpeg that runs will use."""
    from pipeline.environment import environment_report

    try:
        report = environment_report(device, weights)
    except StylizeError as error:
        raise _fail(error)
    for key, value in report.items():
        out.print(f"{key + ':':15} {value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
