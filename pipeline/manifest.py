"""The YAML manifest: what to stylize, with which styles and settings, and where to write it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InputError
from .settings import StyleSettings, describe_validation_error

OutputFormat = Literal["jpg", "png", "webp"]


class StyleRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    weight: float = Field(1.0, ge=0)


def _as_style_refs(value):
    """`style` may be one path, or a list of paths and {path, weight} entries."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [{"path": item} if isinstance(item, str) else item for item in items]


class Job(BaseModel):
    # Any stylization setting may be overridden per job, next to these keys.
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    input: str
    recursive: bool = False
    style: list[StyleRef] | None = None
    styles: list[list[StyleRef]] | None = None
    format: OutputFormat = "jpg"
    quality: int = Field(95, ge=1, le=100)

    _style_refs = field_validator("style", mode="before")(_as_style_refs)

    @field_validator("styles", mode="before")
    @classmethod
    def _each_style(cls, value):
        return None if value is None else [_as_style_refs(item) for item in value]

    @model_validator(mode="after")
    def _check(self) -> "Job":
        if (self.style is None) == (self.styles is None):
            raise ValueError("give exactly one of style (one output, styles blended) or styles (one output per style)")
        unknown = sorted(set(self.model_extra or {}) - set(StyleSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}: not a job key nor a stylization setting")
        return self

    @property
    def overrides(self) -> dict:
        return dict(self.model_extra or {})

    def style_sets(self) -> list[list[StyleRef]]:
        """One entry per output: each a list of styles to blend."""
        return self.styles if self.styles is not None else [self.style]


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_dir: Path
    defaults: dict = Field(default_factory=dict)
    jobs: list[Job] = Field(min_length=1)
    source: Path = Field(Path("."), exclude=True)  # the manifest file; relative paths resolve beside it

    @field_validator("defaults")
    @classmethod
    def _known_settings(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(StyleSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r}")
        return value

    def resolve(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.source.parent / path

    def settings_for(self, job: Job) -> StyleSettings:
        from .settings import settings_from

        return settings_from({**self.defaults, **job.overrides}, f"{self.source}: jobs[{job.name}]")


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise InputError("manifest not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"not valid YAML{where}", path) from None
    if not isinstance(data, dict):
        raise InputError("a manifest is a mapping with output_dir and jobs", path)
    try:
        return Manifest(**data, source=path.resolve())
    except ValidationError as error:
        raise InputError(describe_validation_error(error), path) from None
