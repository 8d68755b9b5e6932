"""What many test files share: the bundled samples' paths, and the CLI invoked in-process."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import cli

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "samples/photos/chelsea.jpg"
STARRY = REPO / "samples/styles/starry_night.jpg"
MATISSE = REPO / "samples/styles/woman-with-hat-matisse.jpg"
CLIP = REPO / "samples/realshort.mp4"

_runner = CliRunner()


def invoke(*args):
    """`stylize ARGS...` in this process; paths may be given as Path."""
    return _runner.invoke(cli.app, [str(a) for a in args])
