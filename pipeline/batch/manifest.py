"""The YAML manifest: what to stylize, with which styles and settings, and where to write it.

Loading validates everything it can before any GPU work and reports every
problem at once, each with its location in the manifest (`jobs[2].style[1].path`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..media.files import check_destination, is_glob, name_too_long
from ..media.images import check_fits_network, load_image
from ..settings import MAX_WEIGHT, StyleSettings, VideoSettings, settings_from, validation_problems
from .strict_yaml import read_yaml

OutputFormat = Literal["jpg", "png", "webp"]
Backend = Literal["local", "ray"]
PRESET_DIRS = (Path(__file__).resolve().parents[2] / "configs" / "presets",)
OUTPUT_KEYS = {"format", "quality"}


class ManifestError(InputError):
    """Every problem found in one manifest; the message is the first, `problems` holds all."""

    def __init__(self, source: Path, problems: list[str]):
        self.problems = [f"{source}: {problem}" for problem in problems]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(self.problems[0] + more)


class StyleRef(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Path
    weight: float = Field(1.0, ge=0, le=MAX_WEIGHT)


def _as_style_refs(value):
    """`style` may be one path, or a list of paths and {path, weight} entries."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [{"path": item} if isinstance(item, str) else item for item in items]


class _DefaultsKeys(BaseModel):
    """The defaults' keys that are not stylization settings, checked as a job's are."""

    preset: str | None = None
    format: OutputFormat | None = None
    quality: int | None = Field(None, ge=1, le=100)
    video: dict[str, Any] | None = None


class Job(BaseModel):
    # Stylization settings may sit beside these keys; they are checked against StyleSettings.
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    input: str
    recursive: bool = False
    style: list[StyleRef] | None = None
    styles: list[list[StyleRef]] | None = None
    preset: str | None = None
    format: OutputFormat | None = None
    quality: int | None = Field(None, ge=1, le=100)
    video: dict[str, Any] | None = None  # VideoSettings keys; checked with the defaults' `video` merged in

    _style_refs = field_validator("style", mode="before")(_as_style_refs)

    @field_validator("styles", mode="before")
    @classmethod
    def _each_style(cls, value):
        return [_as_style_refs(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_kind_of_style(self) -> "Job":
        if (self.style is None) == (self.styles is None):
            raise ValueError("give exactly one of style (styles blended into one output) or styles (one output per style)")
        return self

    def style_sets(self) -> list[list[StyleRef]]:
        """One entry per output: each a list of styles to blend."""
        return self.styles if self.styles is not None else [self.style]


class _ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: str
    backend: Backend = "local"  # where items run: this process, or a Ray cluster
    ray_address: str | None = None  # a running cluster (HOST:6379); default: RAY_ADDRESS, else a local one
    defaults: dict[str, Any] = Field(default_factory=dict)
    jobs: list[dict[str, Any]] = Field(min_length=1)


@dataclass
class JobPlan:
    """A job with everything resolved: its index, settings and output options."""

    index: int
    job: Job
    settings: StyleSettings
    format: str
    quality: int
    video: VideoSettings = field(default_factory=VideoSettings)


@dataclass
class Manifest:
    source: Path
    output_dir: Path
    jobs: list[JobPlan]
    backend: str = "local"
    ray_address: str | None = None

    def resolve(self, path: str | Path) -> Path:
        return _resolve(self.source, path)

    def job(self, name: str) -> JobPlan:
        for plan in self.jobs:
            if plan.job.name == name:
                return plan
        raise InputError(f"no job named {name!r}; jobs: {', '.join(p.job.name for p in self.jobs)}", self.source)


def load_manifest(path: str | Path) -> Manifest:
    """Parse and check a manifest; raise ManifestError listing every problem found."""
    manifest, problems = parse_manifest(path)
    if problems:
        raise ManifestError(manifest.source, problems)
    return manifest


def parse_manifest(path: str | Path) -> tuple[Manifest, list[str]]:
    """The manifest as far as it parses, and every problem found on the way. Jobs whose
    settings are invalid stay in (with default settings) so their files can still be checked."""
    source = Path(path).resolve()
    data = _read_yaml(source)
    problems: list[str] = []
    top = _ManifestFile.model_construct()
    try:
        top = _ManifestFile(**data)
    except ValidationError as error:
        problems += validation_problems(error)  # and go on: the jobs may hold more problems
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    default_problems, base = _check_defaults(source, defaults)
    problems += default_problems
    jobs = []
    raw_jobs = data.get("jobs") if isinstance(data.get("jobs"), list) else []
    for index, raw in enumerate(raw_jobs):
        if isinstance(raw, dict):
            job_problems, plan = _parse_job(source, index, raw, defaults, base)
            problems += job_problems
            jobs += [plan] if plan else []
    uses = Counter(plan.job.name for plan in jobs)
    problems += [f"jobs: job name {name!r} is used twice" for name in sorted(name for name, count in uses.items() if count > 1)]
    output_dir = _resolve(source, str(data.get("output_dir", "")))
    problems += _check_output_dir(output_dir) if isinstance(data.get("output_dir"), str) else []
    backend = getattr(top, "backend", "local")
    return Manifest(source, output_dir, jobs, backend, getattr(top, "ray_address", None)), problems


def check_style_files(manifest: Manifest) -> list[str]:
    """Every style file must exist, decode, and be thick enough for VGG19 at the job's coarsest level."""
    problems = []
    sizes: dict[Path, tuple[int, int] | InputError] = {}  # each file decoded once, however many jobs use it
    for plan in manifest.jobs:
        long_edge = plan.settings.style_edge(plan.settings.scale_sizes()[0])
        for where, ref in _style_locations(plan):
            try:
                path = manifest.resolve(ref.path)
                width, height = _decoded_size(path, sizes)
                check_fits_network(height, width, long_edge, path)
            except InputError as error:
                problems.append(f"{where}: {error}")
    return problems


def _decoded_size(path: Path, sizes: dict) -> tuple[int, int]:
    """(width, height) of an image, decoding each file once; its InputError each time it is asked for."""
    if path not in sizes:
        try:
            if problem := name_too_long(path):
                raise InputError(problem, path)
            sizes[path] = load_image(path).size
        except InputError as error:
            sizes[path] = error
    if isinstance(sizes[path], InputError):
        raise sizes[path]
    return sizes[path]


def _read_yaml(source: Path) -> dict:
    data = read_yaml(source)
    if not isinstance(data, dict):
        raise InputError("a manifest is a mapping with output_dir, defaults and jobs", source)
    return data


def _parse_job(source: Path, index: int, raw: dict, defaults: dict, base: dict) -> tuple[list[str], JobPlan | None]:
    """A job's problems, all of them (a schema error does not hide its settings'), and its plan.
    `base` holds the defaults' values, already checked: their problems are not repeated per job."""
    where = f"jobs[{index}]"
    problems, job = [], None
    try:
        job = Job(**raw)
    except ValidationError as error:
        problems += validation_problems(error, where)  # and go on: its settings may hold more problems
    own = {key: value for key, value in raw.items() if key not in Job.model_fields}
    unknown = sorted(set(own) - set(StyleSettings.model_fields))
    problems += [f"{where}.{key}: unknown key (not a job key nor a stylization setting)" for key in unknown]
    own = {key: value for key, value in own.items() if key not in unknown}
    preset_problems, found = _preset_of(where, raw.get("preset"), source)
    problems += preset_problems
    job_values = {**found, **own}
    settings = StyleSettings()  # a stand-in when the job's own are invalid, so its files can still be checked
    try:
        settings = StyleSettings(**{**base, **job_values})
    except ValidationError as error:
        problems += validation_problems(error, where, only=set(job_values))
    job_video = raw.get("video") if isinstance(raw.get("video"), dict) else {}
    video = VideoSettings()
    try:
        video = VideoSettings(**{**_mapping(defaults.get("video")), **job_video})
    except ValidationError as error:
        problems += validation_problems(error, f"{where}.video", only=set(job_video))
    if job is None:
        return problems, None
    if any(not sum(ref.weight for ref in style_set) for style_set in job.style_sets()):
        problems.append(f"{where}.style: style weights are all zero: give at least one a weight above 0")
    problems += _check_input(source, where, job)
    output = {key: getattr(job, key) or defaults.get(key) for key in OUTPUT_KEYS}
    return problems, JobPlan(index, job, settings, output["format"] or "jpg", output["quality"] or 95, video)


def _check_defaults(source: Path, defaults: dict) -> tuple[list[str], dict]:
    """The defaults' problems, each once, and their values: the defaults' preset, then their own keys."""
    allowed = set(StyleSettings.model_fields) | set(_DefaultsKeys.model_fields)
    problems = [f"defaults.{key}: unknown setting" for key in sorted(set(defaults) - allowed)]
    preset_problems, found = _preset_of("defaults", defaults.get("preset"), source)
    problems += preset_problems
    base = {**found, **{key: value for key, value in defaults.items() if key in StyleSettings.model_fields}}
    try:
        StyleSettings(**base)
    except ValidationError as error:
        problems += validation_problems(error, "defaults")
    try:
        VideoSettings(**_mapping(defaults.get("video")))
    except ValidationError as error:
        problems += validation_problems(error, "defaults.video")
    try:
        _DefaultsKeys(**{key: value for key, value in defaults.items() if key in _DefaultsKeys.model_fields})
    except ValidationError as error:
        problems += validation_problems(error, "defaults")
    return problems, base


def _preset_of(where: str, preset, source: Path) -> tuple[list[str], dict]:
    """The settings of the preset a job or the defaults name ({} for none), and the problem finding it."""
    if not isinstance(preset, str) or not preset:
        return [], {}  # none, or not a name: the schema reports that
    try:
        found = find_preset(preset, source)
    except InputError as error:
        return [f"{where}.preset: {error}"], {}
    if found is None:
        return [f"{where}.preset: no preset named {preset!r} ({preset_hint(source)})"], {}
    return [], found


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def _check_input(source: Path, where: str, job: Job) -> list[str]:
    if is_glob(job.input):
        return []  # a glob may match nothing yet; planning reports that
    path = _resolve(source, job.input)
    if problem := name_too_long(path):
        return [f"{where}.input: {path}: {problem}"]
    return [] if path.exists() else [f"{where}.input: {path} does not exist"]


def _check_output_dir(output_dir: Path) -> list[str]:
    if problem := name_too_long(output_dir):
        return [f"output_dir: {output_dir}: {problem}"]
    try:
        check_destination(output_dir / "report.json")
    except InputError as error:
        return [f"output_dir: {error}"]
    return []


def _style_locations(plan: JobPlan):
    job, where = plan.job, f"jobs[{plan.index}]"
    if job.style is not None:
        for i, ref in enumerate(job.style):
            yield (f"{where}.style[{i}].path" if len(job.style) > 1 else f"{where}.style"), ref
    else:
        for k, style_set in enumerate(job.styles):
            for i, ref in enumerate(style_set):
                yield (f"{where}.styles[{k}][{i}].path" if len(style_set) > 1 else f"{where}.styles[{k}]"), ref


def find_preset(name: str, beside: Path | None = None) -> dict | None:
    """A preset's settings: from a `presets/` folder beside `beside` (a manifest) first,
    then the bundled ones; None when there is no such preset."""
    for folder in _preset_folders(beside):
        path = folder / f"{name}.yaml"
        if problem := name_too_long(path):
            raise InputError(f"no preset named {name!r}: the name {problem}")
        if path.is_file():
            values = read_yaml(path, "preset") or {}
            if not isinstance(values, dict):
                raise InputError("a preset is a mapping of settings, such as size: 512", path)
            return values
    return None


def settings_with_preset(preset: str | None, given: dict, where: str = "option") -> StyleSettings:
    """A bundled preset's settings (none: the library's defaults) under the values given."""
    values = find_preset(preset) if preset else {}
    if values is None:
        raise InputError(f"{where} preset: no preset named {preset!r} ({preset_hint()})")
    return settings_from({**values, **given}, where)


def preset_names(beside: Path | None = None) -> list[str]:
    return sorted({p.stem for folder in _preset_folders(beside) if folder.is_dir() for p in folder.glob("*.yaml")})


def preset_hint(beside: Path | None = None) -> str:
    names = preset_names(beside)
    return f"available: {', '.join(names)}" if names else "no presets folder found"


def _preset_folders(beside: Path | None) -> tuple[Path, ...]:
    return ((beside.parent / "presets",) if beside else ()) + PRESET_DIRS


def _resolve(source: Path, path: str | Path) -> Path:
    path = Path(path).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else source.parent / path))
