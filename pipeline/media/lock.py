"""One writer per output folder (a manifest run) or per output file (`stylize image`, `stylize
video`): a lock file naming its holder, taken over when the holder is dead."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from ..errors import EnvironmentProblem
from .files import timestamp

LOCK_NAME = ".stylize.lock"


class OutputLock:
    def __init__(self, path: Path, what: Path):
        self.path = path
        self.what = what  # the folder or file it keeps to one writer, as the user named it
        self.took_over: dict | None = None  # the dead holder replaced, if any

    @classmethod
    def for_folder(cls, folder: Path) -> "OutputLock":
        return cls(folder / LOCK_NAME, folder)

    @classmethod
    def for_output(cls, output: Path) -> "OutputLock":
        return cls(output.with_name(f".{output.name}.lock"), output)

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": timestamp()}
        for _ in range(2):
            try:
                with open(self.path, "x") as stream:
                    json.dump(me, stream)
                return self
            except FileExistsError:
                holder = self._holder()
                if not _is_dead(holder):
                    raise EnvironmentProblem(
                        f"{self.what} is in use by another stylize run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('started')}); wait for it, or delete {self.path} if it is gone"
                    ) from None
                self.took_over = holder
                self.path.unlink(missing_ok=True)
        raise EnvironmentProblem(f"could not take the lock {self.path}; delete it if no run is active")

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}


def _is_dead(holder: dict) -> bool:
    """Only a holder on this host can be checked; an unreadable lock counts as dead."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False
