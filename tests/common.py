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


def one_line_error(result, *fragments: str) -> str:
    """The refusal the README promises for bad input: exit 2, one line, no traceback; the line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output and "Warning" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
