"""Files in and out. Inputs are checked with one clear message; outputs are written
to a temporary file beside the target and renamed into place, so a reader (or a
rerun after a crash) never sees a half-written file."""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import InputError

PARTIAL = ".partial"  # marks temporary files; a run removes leftovers of killed runs
NAME_MAX = 255  # bytes in one file or folder name, on Linux, macOS and Windows file systems alike
GLOB_CHARS = "*?["
# Bytes a name leaves for the longest hidden file beside it: `.NAME.XXXXXXXX.partial.json`, a sidecar's temporary.
NAME_HEADROOM = 24


def require_file(path: str | Path, kind: str = "file") -> Path:
    """The path, if it is a non-empty file; otherwise an InputError naming it."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError(f"is a folder, expected {kind}", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty (0 bytes)", path)
    return path


def name_too_long(path: str | Path) -> str | None:
    """Why no file system takes this path (a name in it over NAME_MAX bytes, where asking whether it
    exists raises rather than answering), or None."""
    longest = max((len(part.encode("utf-8", "surrogatepass")) for part in Path(path).parts), default=0)
    return f"has a name {longest} bytes long; file systems allow {NAME_MAX}" if longest > NAME_MAX else None


def check_destination(path: str | Path) -> Path:
    """The folder `path` would be written in exists or can be made, and is writable (tried,
    not asked: root passes every permission check, yet cannot write in /proc or a read-only
    mount), and the name leaves room for its temporaries: checked before any work, and named
    by the user's path, not a temporary one."""
    path = Path(path)
    existing = path.absolute().parent
    while not existing.exists() and not existing.is_symlink():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"cannot be written: {existing} is a file, not a folder", path)
    try:
        handle, probe = tempfile.mkstemp(prefix=".stylize-probe.", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise InputError(f"cannot be written: cannot create files in {existing} ({error.strerror or error})", path) from None
    check_name_length(path)
    return path


def check_name_length(path: Path) -> None:
    """A name leaves NAME_HEADROOM bytes for the hidden files made beside it (its temporary,
    lock, sidecar and work folder), within the file system's limit on one name."""
    longest = name_limit(path.absolute().parent) - NAME_HEADROOM
    length = len(os.fsencode(path.name))
    if length > longest:
        raise InputError(f"file name too long ({length} bytes; at most {longest} here, to leave room for "
                         "the temporary and lock files beside it): shorten it", path)


def name_limit(folder: Path) -> int:
    """The longest file name `folder` (or, until it is made, the nearest folder above) allows, in bytes."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def fit_name(stem: str, suffix: str, limit: int) -> str:
    """`stem + suffix`, its stem cut and marked with a digest of the whole when the name would
    pass `limit` bytes less NAME_HEADROOM: two long names that differ late stay apart."""
    room = limit - NAME_HEADROOM - len(os.fsencode(suffix))
    encoded = os.fsencode(stem)
    if len(encoded) <= room:
        return stem + suffix
    mark = "~" + hashlib.sha256(encoded).hexdigest()[:12]
    cut = stem
    while len(os.fsencode(cut)) > room - len(mark):  # whole characters only
        cut = cut[:-1]
    return cut + mark + suffix


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes; "unreadable" lets a key be made and the item fail later with the real reason.
    Remembered per (path, size, modification time): a style shared by a thousand items is read once."""
    try:
        stat = Path(path).stat()
    except OSError:
        return "unreadable"
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return "unreadable"
    return digest.hexdigest()


def partial_path(path: Path) -> Path:
    """A new hidden temporary file beside `path`, keeping its suffix (ffmpeg picks the format by it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{PARTIAL}{path.suffix}", dir=path.parent)
    os.close(handle)
    return Path(temporary)


def publish(temporary: Path, path: Path, durable: bool = True) -> Path:
    """Flush a finished temporary file (unless it is cheap to remake: not `durable`) and
    rename it into place (atomic on one file system)."""
    if durable:
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
    os.chmod(temporary, 0o666 & ~_current_umask())  # mkstemp makes files private; outputs are not
    os.replace(temporary, path)
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = True) -> Path:
    path = Path(path)
    temporary = partial_path(path)
    try:
        with open(temporary, "wb") as stream:
            write(stream)
        return publish(temporary, path, durable)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str, durable: bool = True) -> Path:
    return atomic_write(path, lambda stream: stream.write(text.encode()), durable)


def write_json(path: str | Path, data, durable: bool = True) -> Path:
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n", durable)


def printable(text: str) -> str:
    """A name as one line of valid text: bytes that are not UTF-8 as \\xNN, control
    characters (a newline, an escape) escaped, so a name can neither break nor forge a line."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def timestamp() -> str:
    """Local time with its offset, as every record, sidecar and lock states it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def remove_partials_of(output: Path) -> None:
    """Temporary files an earlier, killed writer of `output` left beside it."""
    for partial in output.parent.glob(f".{glob.escape(output.stem)}.*{PARTIAL}{glob.escape(output.suffix)}"):
        partial.unlink(missing_ok=True)


def walk_files(root: Path, recursive: bool, hidden: bool = False, prune: Path | None = None) -> Iterator[Path]:
    """Files under `root`, sorted, never following a symlinked folder (so a link loop cannot
    hang or multiply a walk), skipping hidden names unless asked and the folder `prune`."""
    pruned = prune.resolve() if prune is not None else None
    for folder, folders, files in os.walk(root, followlinks=False):
        folders[:] = sorted(name for name in folders if recursive and (hidden or not name.startswith("."))
                            and (pruned is None or Path(folder, name).resolve() != pruned))
        for name in sorted(files):
            if (hidden or not name.startswith(".")) and os.path.isfile(os.path.join(folder, name)):
                yield Path(folder, name)


def is_glob(text: str) -> bool:
    """Whether a path is a glob pattern rather than a file or folder."""
    return any(char in text for char in GLOB_CHARS)


def glob_files(pattern: str, recursive: bool, prune: Path | None = None) -> tuple[Path, list[Path]]:
    """The folder a glob starts from and the files it matches, walked as `walk_files` does.
    `**` spans folders when `recursive`, else it is `*`; `*`, `?` and `[...]` stay inside one name."""
    magic = min(i for i, char in enumerate(pattern) if char in GLOB_CHARS)
    base = Path(pattern[:magic]) if pattern[:magic].endswith(os.sep) else Path(pattern[:magic]).parent
    rest = os.path.relpath(pattern, base).replace(os.sep, "/")
    matches = _glob_regex(rest, recursive).fullmatch
    deep = "/" in rest or (recursive and "**" in rest)
    found = [path for path in walk_files(base, deep, prune=prune) if matches(path.relative_to(base).as_posix())]
    return base, found


def _glob_regex(pattern: str, recursive: bool) -> re.Pattern:
    names = pattern.split("/")
    regex = ""
    for index, name in enumerate(names):
        last = index == len(names) - 1
        if name == "**" and recursive:
            regex += ".*" if last else "(?:[^/]+/)*"
            continue
        regex += _name_regex(name) + ("" if last else "/")
    return re.compile(regex)


def _name_regex(name: str) -> str:
    regex, index = "", 0
    while index < len(name):
        char = name[index]
        closing = name.find("]", index + 2) if char == "[" else -1
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif closing > 0:
            inside = name[index + 1 : closing]
            regex += "[" + ("^" + re.escape(inside[1:]) if inside.startswith("!") else re.escape(inside)) + "]"
            index = closing
        else:
            regex += re.escape(char)
        index += 1
    return regex


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
