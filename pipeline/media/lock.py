"""One writer per output. `stylize image` and `stylize video` hold a lock file beside their
output, `.NAME.lock`; a run holds its output folder's `.stylize.lock`, which lists (claims)
every output the run is to write. Each side checks the other after taking its own lock, so a
second writer of an output is refused at once, naming the first. A lock whose holder is dead
is taken over. Cleanup of what dead writers left (temporaries, locks) spares live writers'."""

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
    def __init__(self, path: Path, what: Path, claims: tuple[Path, ...] = (), manifest: str | None = None):
        self.path = path
        self.manifest = manifest  # the run's, named to whoever it refuses
        self.what = what  # the folder or file it keeps to one writer, as the user named it
        self.claims = claims  # a run's outputs to write (under its folder), which no single command may write meanwhile
        self.took_over: dict | None = None  # the dead holder replaced, if any
        self._identity: tuple | None = None  # the lock file's inode and times, to tell it from a later one

    @classmethod
    def for_folder(cls, folder: Path, claims: Iterable[Path] = (), manifest: str | None = None) -> "OutputLock":
        return cls(folder / LOCK_NAME, folder, tuple(claims), manifest)

    @classmethod
    def for_output(cls, output: Path) -> "OutputLock":
        return cls(lock_path(output), output)

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise EnvironmentProblem naming its live holder (for an output,
        also a live run whose folder lock claims it)."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": timestamp(), "manifest": self.manifest,
              "outputs": [os.path.relpath(output, self.path.parent) for output in self.claims]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create(me)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                raise InputError("file name too long for its lock file; shorten it", self.what) from None
            raise EnvironmentProblem(f"cannot lock {self.what}: {error.strerror or error}") from None
        run = claimed_by(self.what) if self.path.name != LOCK_NAME else None  # a folder lock is a run's own
        if run is not None:  # taken after our own lock, so a run starting meanwhile sees ours
            self.release()
            raise EnvironmentProblem(f"{self.what} is being written by a run of {run.get('manifest') or 'a manifest'}, "
                                     f"{describe_holder(run)}; wait for it to finish")
        return self

    def _create(self, me: dict) -> None:
        for _ in range(2):
            try:
                with open(self.path, "x") as stream:
                    json.dump(me, stream)
                self._identity = _identity(self.path)
                return
            except FileExistsError:
                holder = read_holder(self.path)
                if not is_dead(holder):
                    raise EnvironmentProblem(f"{self.what} is in use by {describe_holder(holder)}; wait for it to finish, "
                                             f"or delete {self.path} if that process is gone") from None
                self.took_over = holder
                self.path.unlink(missing_ok=True)
        raise EnvironmentProblem(f"could not take the lock {self.path}; delete it if no stylize is running")

    def release(self) -> None:
        """Remove the lock file, if it is still this holder's."""
        if self.still_held():
            self.path.unlink(missing_ok=True)

    def still_held(self) -> bool:
        """False once the lock file was deleted or replaced (its folder removed, say)."""
        return self._identity is not None and _identity(self.path) == self._identity


def _identity(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


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


def is_held(output: Path) -> dict | None:
    """The live single command writing `output`, if any."""
    path = lock_path(output)
    if not path.exists():
        return None
    holder = read_holder(path)
    return None if is_dead(holder) else holder


def claimed_by(output: Path) -> dict | None:
    """The live run whose folder lock, in a folder above `output`, claims it."""
    output = output.absolute()
    for folder in output.parents:
        lock = folder / LOCK_NAME
        if lock.is_file():
            holder = read_holder(lock)
            if not is_dead(holder) and os.path.relpath(output, folder) in holder.get("outputs", ()):
                return holder
    return None


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
            live[output] = is_held(output) is not None
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
