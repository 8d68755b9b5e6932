"""What the studio may read and write: its own output folder (uploads and results), the
style library, and the run folders it was told about. Nothing else, whatever a request asks."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..media.files import atomic_write, walk_files
from ..media.images import IMAGE_SUFFIXES

BUNDLED_STYLES = Path(__file__).resolve().parents[2] / "samples" / "styles"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


@dataclass(frozen=True)
class StudioFolders:
    output_dir: Path  # uploads, results and Gradio's cache all land here
    styles_dir: Path = BUNDLED_STYLES
    runs: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def uploads(self) -> Path:
        return self.output_dir / "uploads"

    @property
    def cache(self) -> Path:
        return self.output_dir / ".cache"  # Gradio's files: previews, and uploads before we keep them

    def library(self) -> list[Path]:
        """The style library's paintings, by name."""
        return sorted(p for p in walk_files(self.styles_dir, recursive=False) if p.suffix.lower() in IMAGE_SUFFIXES)

    def keep_upload(self, uploaded: str | Path) -> Path:
        """A copy of an upload under uploads/, named by its bytes, so the command shown for a
        result still finds it after Gradio's cache is cleared."""
        uploaded = Path(uploaded)
        digest = hashlib.sha256(uploaded.read_bytes()).hexdigest()[:12]
        kept = self.uploads / f"{digest}-{safe_name(uploaded.name)}"
        if not kept.is_file():
            with uploaded.open("rb") as source:
                atomic_write(kept, lambda target: shutil.copyfileobj(source, target))
        return kept

    def new_output(self, kind: str, stem: str, suffix: str) -> Path:
        """A fresh result path under images/ or videos/: time-stamped, never an existing file."""
        folder = self.output_dir / kind
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(stem)}"
        candidates = (folder / f"{base}{'' if n == 0 else f'-{n}'}{suffix}" for n in range(10_000))
        return next(path for path in candidates if not path.exists())

    def run_folders(self) -> list[Path]:
        """Each --runs folder that holds a report, else its subfolders that do."""
        found: list[Path] = []
        for folder in self.runs:
            if (folder / REPORT_JSON).is_file():
                found.append(folder)
            elif folder.is_dir():
                found += sorted(p for p in folder.iterdir() if p.is_dir() and (p / REPORT_JSON).is_file())
        return found

    def run_file(self, run: int, relative: str) -> Path:
        """A file inside the run folder numbered `run`; PermissionError for anything that
        resolves outside it (.., absolute paths, symlinks), FileNotFoundError if absent."""
        folders = self.run_folders()
        if not 0 <= run < len(folders):
            raise FileNotFoundError(relative)
        root = folders[run].resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise PermissionError(relative)
        if not path.is_file():
            raise FileNotFoundError(relative)
        return path


def safe_name(name: str) -> str:
    """A file name with only letters, digits, dot, dash and underscore (at most 80 characters)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "upload"
    return cleaned[-80:]
