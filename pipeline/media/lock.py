"""One writer per output. Every command that writes an output file (`stylize image`,
`stylize video`, each item of `stylize run`) holds a lock file beside it, `.NAME.lock`,
naming its holder; a run also holds its output folder's `.stylize.lock`. A second writer
is refused at once, naming the holder; a lock whose holder is dead is taken over. Cleanup
of what killed writers left (temporaries, locks) touches only outputs no live writer holds."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Iterable

from ..errors import EnvironmentProblem, InputError
from .files import PARTIAL, timestamp, walk_files

LOCK_NAME = ".stylize.lock"
LOCK_SUFFIX = ".lock"
WORK_SUFFIX = ".work"  # a clip's work folder, .NAME.work/, beside its output
# A temporary of output NAME (see files.partial_path): .{stem}.{8 random characters}.partial{suffix}
_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.[A-Za-z0-9_]{8}" + re.escape(PARTIAL) + r"(?P<suffix>\.[^.]*)?")


class OutputLock:
    def __init__(self, path: Path, what: Path):
        self.path = path
        self.what = what  # the folder or file it keeps to one writer, as the user named it
        self.took_over: dict | None = None  # the dead holder replaced, if any
        self.token = secrets.token_hex(8)  # tells this holder's lock file from a later one's

    @classmethod
    def for_folder(cls, folder: Path) -> "OutputLock":
        return cls(folder / LOCK_NAME, folder)

    @classmethod
    def for_output(cls, output: Path) -> "OutputLock":
        return cls(lock_path(output), output)

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise EnvironmentProblem naming its live holder."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": timestamp(), "token": self.token}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(2):
                try:
                    with open(self.path, "x") as stream:
                        json.dump(me, stream)
                    return self
                except FileExistsError:
                    holder = read_holder(self.path)
                    if not is_dead(holder):
                        raise EnvironmentProblem(f"{self.what} is in use by {describe_holder(holder)}; wait for it to finish, "
                                                 f"or delete {self.path} if that process is gone") from None
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                raise InputError("file name too long for its lock file; shorten it", self.what) from None
            raise EnvironmentProblem(f"cannot lock {self.what}: {error.strerror or error}") from None
        raise EnvironmentProblem(f"could not take the lock {self.path}; delete it if no stylize is running")

    def release(self) -> None:
        """Remove the lock file, if it is still this holder's."""
        if self.still_held():
            self.path.unlink(missing_ok=True)

    def still_held(self) -> bool:
        """False once the lock file was deleted or replaced (its folder removed, say)."""
        return read_holder(self.path).get("token") == self.token


def lock_path(output: Path) -> Path:
    return output.with_name(f".{output.name}{LOCK_SUFFIX}")


def read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe_holder(holder: dict) -> str:
    return f"another stylize (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')})"


def is_dead(holder: dict) -> bool:
    """Only a holder on this host can be checked; an unreadable lock counts as dead."""
    if not holder:
        return True
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        return False
    return False


def is_held(output: Path) -> bool:
    """Whether a live writer holds `output`."""
    path = lock_path(output)
    return path.exists() and not is_dead(read_holder(path))


class ItemLocks:
    """The locks of a run's outputs: all taken before any work, each released as its item ends."""

    def __init__(self):
        self.held: dict[str, OutputLock] = {}

    def take(self, outputs: Iterable[Path]) -> dict[str, str]:
        """Lock every output; output -> why it is refused, for those a live writer holds."""
        refused = {}
        for output in outputs:
            try:
                self.held[str(output)] = OutputLock.for_output(output).acquire()
            except (EnvironmentProblem, InputError) as error:
                refused[str(output)] = str(error)
        return refused

    def release(self, output: str) -> None:
        lock = self.held.pop(output, None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for output in list(self.held):
            self.release(output)


def remove_stale_files(folder: Path) -> None:
    """Temporaries and lock files that dead writers left under `folder` (their rename or
    release never happened). Those of an output a live writer holds stay."""
    live: dict[Path, bool] = {}
    for path in walk_files(folder, recursive=True, hidden=True):
        name = path.name
        if name.endswith(LOCK_SUFFIX) and name.startswith(".") and name != LOCK_NAME:
            if is_dead(read_holder(path)):
                path.unlink(missing_ok=True)
            continue
        match = _TEMPORARY.fullmatch(name)
        if match is None:
            continue
        output = owner_of(path.with_name(match["stem"] + (match["suffix"] or "")))
        if output not in live:
            live[output] = is_held(output)
        if not live[output]:
            path.unlink(missing_ok=True)


def owner_of(path: Path) -> Path:
    """The output whose writer writes `path`: itself, or the output a sidecar
    (`NAME.json`) or a work folder (`.NAME.work/...`) belongs to."""
    for parent in path.parents:
        if parent.name.startswith(".") and parent.name.endswith(WORK_SUFFIX) and len(parent.name) > len(WORK_SUFFIX) + 1:
            return parent.with_name(parent.name[1 : -len(WORK_SUFFIX)])
    if path.suffix == ".json" and Path(path.stem).suffix:
        return path.with_name(path.stem)
    return path
