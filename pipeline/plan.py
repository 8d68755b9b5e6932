"""From a manifest to a flat list of work items: one per (content, style set)."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .images import IMAGE_SUFFIXES
from .manifest import Job, Manifest
from .settings import StyleSettings
from .stylize import Style


@dataclass(frozen=True)
class PlanItem:
    job: str
    content: Path
    styles: tuple[Style, ...]
    output: Path
    settings: StyleSettings
    quality: int


def plan(manifest: Manifest) -> list[PlanItem]:
    items = []
    for index, job in enumerate(manifest.jobs):
        settings = manifest.settings_for(job)
        contents = expand_input(manifest, job, index)
        for style_set in job.style_sets():
            styles = tuple(Style(manifest.resolve(ref.path), ref.weight) for ref in style_set)
            for content, relative in contents:
                output = _output_path(manifest, job, relative, styles)
                items.append(PlanItem(job.name, content, styles, output, settings, job.quality))
    return items


def expand_input(manifest: Manifest, job: Job, index: int) -> list[tuple[Path, Path]]:
    """Content files of a job with their paths relative to the input folder."""
    where = f"jobs[{index}].input"
    if any(char in job.input for char in "*?["):
        pattern = str(manifest.resolve(job.input))
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=job.recursive) if Path(p).is_file())
        base = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
        base = base if base.is_dir() else base.parent
        pairs = [(p, p.relative_to(base)) for p in found]
    else:
        source = manifest.resolve(job.input)
        if source.is_file():
            return [(source, Path(source.name))]
        if not source.is_dir():
            raise InputError(f"{where}: {source} does not exist", manifest.source)
        walker = source.rglob("*") if job.recursive else source.glob("*")
        pairs = [(p, p.relative_to(source)) for p in sorted(walker) if p.is_file()]
    images = [(p, rel) for p, rel in pairs if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise InputError(f"{where}: no images found in {job.input}", manifest.source)
    return images


def style_label(styles: tuple[Style, ...]) -> str:
    return "+".join(Path(style.image).stem for style in styles)


def _output_path(manifest: Manifest, job: Job, relative: Path, styles: tuple[Style, ...]) -> Path:
    folder = manifest.resolve(manifest.output_dir) / job.name / relative.parent
    return folder / f"{relative.stem}__{style_label(styles)}.{job.format}"
