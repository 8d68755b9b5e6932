"""From a manifest to a flat list of work items, one per (content, style set), each
with a key that says whether its existing output is still current."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..media.decode import VIDEO_SUFFIXES, probe_video
from ..media.files import file_digest, fit_name, glob_files, is_glob, name_limit, name_too_long, walk_files
from ..media.images import IMAGE_SUFFIXES, check_fits_network, load_image
from ..settings import Style, StyleSettings, VideoSettings
from .manifest import JobPlan, Manifest, ManifestError, check_style_files, parse_manifest

KEY_VERSION = 1

VIDEO_CONTAINERS = {"h264": ".mp4", "h265": ".mp4", "vp9": ".webm", "prores": ".mov"}


@dataclass(frozen=True)
class PlanItem:
    job: str
    content: Path
    styles: tuple[Style, ...]
    output: Path
    settings: StyleSettings
    quality: int
    video: VideoSettings | None = None  # set for clips

    @property
    def is_video(self) -> bool:
        return self.video is not None

    @property
    def sidecar(self) -> Path:
        return self.output.with_name(self.output.name + ".json")

    @property
    def style_label(self) -> str:
        return style_label(self.styles)

    def key(self) -> str:
        """Changes whenever the content, a style, a setting or the weights change."""
        recipe = {
            "version": KEY_VERSION,
            "content": file_digest(self.content),
            "styles": [[file_digest(Path(s.image)), s.weight] for s in self.styles],
            "settings": self.settings.output_identity(),
            "weights": _weights_identity(self.settings.weights),
            "output": [self.output.suffix, self.quality],
            "video": self.video.model_dump(mode="json", exclude={"photo_checks"}) if self.video else None,  # it measures, not paints
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()

    def is_done(self, key: str) -> bool:
        """Done only when the output exists and its sidecar carries this key."""
        if not self.output.is_file():
            return False
        try:
            return json.loads(self.sidecar.read_text()).get("key") == key
        except (OSError, ValueError):
            return False


@dataclass(frozen=True)
class PlannedItem:
    """An item with its key, and whether its output is already current."""

    item: PlanItem
    key: str
    done: bool


def prepare(manifest: Manifest, only: list[str] | None = None, force: bool = False) -> list[PlannedItem]:
    """Plan the items and mark those whose output is current (never, with force)."""
    problems = check_style_files(manifest)
    if problems:
        raise ManifestError(manifest.source, problems)
    planned = []
    for item in plan(manifest, only):
        key = item.key()
        planned.append(PlannedItem(item, key, done=not force and item.is_done(key)))
    return planned


def plan(manifest: Manifest, only: list[str] | None = None) -> list[PlanItem]:
    """Every item of the jobs asked for; ManifestError, before any work, if two items would
    write one output or an output would land outside output_dir."""
    jobs = [manifest.job(name) for name in only] if only else manifest.jobs
    items, where = [], {}
    for job_plan in jobs:
        job = job_plan.job
        contents = expand_input(manifest, job_plan)
        for style_set in job.style_sets():
            styles = tuple(Style(manifest.resolve(ref.path), ref.weight) for ref in style_set)
            for content, relative in contents:
                video = job_plan.video if content.suffix.lower() in VIDEO_SUFFIXES else None
                output = _output_path(manifest, job_plan, relative, styles, video)
                items.append(PlanItem(job.name, content, styles, output, job_plan.settings, job_plan.quality, video))
                where[id(items[-1])] = f"jobs[{job_plan.index}]"
    problems = _output_problems(manifest, items, where)
    if problems:
        raise ManifestError(manifest.source, problems)
    return items


def expand_input(manifest: Manifest, job_plan: JobPlan) -> list[tuple[Path, Path]]:
    """Content files of a job with their paths relative to the input folder. Symlinked folders
    are not followed, hidden files are passed over, and nothing under output_dir is an input."""
    job, where = job_plan.job, f"jobs[{job_plan.index}].input"
    if is_glob(job.input):
        base, found = glob_files(str(manifest.resolve(job.input)), job.recursive, prune=manifest.output_dir)
    else:
        base = manifest.resolve(job.input)
        if base.is_file():
            return [(base, Path(base.name))]
        found = list(walk_files(base, job.recursive, prune=manifest.output_dir))
    media = sorted((p, p.relative_to(base)) for p in found if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if not media:
        raise InputError(f"{where}: no images or videos found in {job.input}", manifest.source)
    return media


def _output_problems(manifest: Manifest, items: list[PlanItem], where: dict[int, str]) -> list[str]:
    """Outputs that would leave output_dir (checked on the resolved path) or that two items
    share (compared as macOS and Windows do: case-insensitively, and with é typed as one
    character the same as e and an accent)."""
    root = manifest.output_dir.resolve()
    problems, owners = [], {}
    for item in items:
        output = item.output.resolve()
        if not output.is_relative_to(root):
            problems.append(f"{where[id(item)]}.name: its outputs would land outside output_dir ({output}); use a plain job name")
            continue
        first = owners.setdefault(unicodedata.normalize("NFC", str(output)).casefold(), item)
        if first is not item:
            problems.append(f"{where[id(item)]}: {_source(first)} and {_source(item)} would both write {item.output}; "
                            "rename one of the files or put them in separate jobs")
    return problems


def _source(item: PlanItem) -> str:
    return f"{item.content.name} x {'+'.join(str(style.image) for style in item.styles)}"


def style_label(styles: tuple[Style, ...]) -> str:
    return "+".join(Path(style.image).stem for style in styles)


def validate_manifest(path: str | Path) -> list[str]:
    """Every problem a run would meet, without running: schema, settings, presets,
    style files, and every content file found decoding."""
    manifest, found = parse_manifest(path)
    problems = [f"{manifest.source}: {p}" for p in found + check_style_files(manifest)]
    for job_plan in manifest.jobs:
        path = manifest.resolve(job_plan.job.input)
        if not is_glob(job_plan.job.input) and (name_too_long(path) or not path.exists()):
            continue  # already reported
        try:
            contents = expand_input(manifest, job_plan)
        except InputError as error:
            problems.append(str(error))
            continue
        for content, _ in contents:
            try:
                _check_content(content, job_plan.settings)
            except InputError as error:
                problems.append(f"{manifest.source}: jobs[{job_plan.index}].input: {error}")
    if not problems:
        try:
            plan(manifest)
        except ManifestError as error:
            problems += error.problems
    return problems


def _check_content(content: Path, settings: StyleSettings) -> None:
    """It decodes (a clip: its first frame) and is thick enough for VGG19 at the coarsest level."""
    if content.suffix.lower() in VIDEO_SUFFIXES:
        info = probe_video(content)
        height, width = info.height, info.width
    else:
        width, height = load_image(content).size
    check_fits_network(height, width, settings.scale_sizes()[0], content)


def _output_path(manifest: Manifest, job_plan: JobPlan, relative: Path, styles, video: VideoSettings | None) -> Path:
    folder = manifest.output_dir / job_plan.job.name / relative.parent
    suffix = VIDEO_CONTAINERS[video.codec] if video else f".{job_plan.format}"
    return folder / fit_name(f"{relative.stem}__{style_label(styles)}", suffix, name_limit(folder))


def _weights_identity(spec: str) -> str:
    # Imported here, not above: keys are made for runs, and validating a manifest must not load torch.
    from ..engine.weights import weights_identity

    return weights_identity(spec)
