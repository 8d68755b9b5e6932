"""Errors users can act on. Each carries the process exit code the CLI returns."""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_ITEMS_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class StylizeError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = EXIT_ITEMS_FAILED


class InputError(StylizeError):
    """A file or setting the user gave is missing, unreadable or invalid."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path is not None else message)


class EnvironmentProblem(StylizeError):
    """The machine lacks what was asked for (a GPU, cached weights, ffmpeg)."""

    exit_code = EXIT_ENVIRONMENT


def describe_error(error: BaseException) -> str:
    """One line for a report: our own messages as they are, anything else with its type."""
    return str(error) if isinstance(error, StylizeError) else f"{error.__class__.__name__}: {error}"
