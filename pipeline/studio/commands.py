"""What the page asks for (a Recipe), and the same request as a `stylize` command and as a
manifest job, ready to paste: what a user tried on the page, they can run overnight."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..batch.manifest import settings_with_preset
from ..settings import DEFAULT_STRENGTH, Style, StyleSettings, VideoSettings, settings_from


@dataclass(frozen=True)
class Recipe:
    styles: tuple[Style, ...]  # paths: the library's paintings or kept uploads
    preset: str = "preview"
    size: int | None = None  # None: the preset's
    iterations: int | None = None  # None: the preset's
    preserve_color: str = "none"
    seed: int = 0
    device: str = "auto"  # the server's, not the page's
    frame_iterations: int | None = None  # clips; None: the library's
    strength: float = DEFAULT_STRENGTH

    def options(self) -> dict:
        """The settings given on top of the preset, as `stylize image` options name them."""
        given = {"size": self.size, "iterations": self.iterations, "strength": self.strength,
                 "preserve_color": self.preserve_color, "seed": self.seed}
        unsaid = {**StyleSettings().model_dump(), **dict(zip(("size", "iterations"), preset_numbers(self.preset)))}
        return {k: v for k, v in given.items() if v is not None and v != unsaid[k]}  # the preset and defaults need no option

    def settings(self) -> StyleSettings:
        return settings_with_preset(self.preset, {**self.options(), "device": self.device}, "studio")

    def video_options(self) -> dict:
        given = self.frame_iterations
        return {} if given in (None, VideoSettings().frame_iterations) else {"frame_iterations": given}

    def video_settings(self) -> VideoSettings:
        return settings_from(self.video_options(), "studio", VideoSettings)


def preset_numbers(preset: str) -> tuple[int, int]:
    """The long edge and steps a preset gives, for the page's boxes."""
    settings = settings_with_preset(preset, {}, "studio")
    return settings.size, settings.iterations


def image_command(content: Path, recipe: Recipe, output: Path) -> str:
    return _command("image", content, recipe, output, {})


def video_command(source: Path, recipe: Recipe, output: Path) -> str:
    return _command("video", source, recipe, output, recipe.video_options())


def manifest_job(content: Path, recipe: Recipe) -> str:
    """One entry for a manifest's `jobs:` list (paths as this server's folder sees them)."""
    styles = [{"path": _shown(s.image), "weight": s.weight} for s in recipe.styles]
    job = {"name": "studio", "input": _shown(content), "style": styles if len(styles) > 1 else styles[0]["path"],
           "preset": recipe.preset, **recipe.options()}
    if recipe.video_options():
        job["video"] = recipe.video_options()
    return yaml.safe_dump([job], sort_keys=False, allow_unicode=True).rstrip()


def _command(kind: str, source: Path, recipe: Recipe, output: Path, extra: dict) -> str:
    blended = len(recipe.styles) > 1
    words = ["stylize", kind, _shown(source)]
    for style in recipe.styles:
        words += ["-s", f"{_shown(style.image)}:{style.weight:g}" if blended else _shown(style.image)]
    for name, value in {"preset": recipe.preset, **recipe.options(), **extra}.items():
        words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join([*words, "-o", _shown(output)])


def _shown(path) -> str:
    """Relative to the server's working folder when inside it, else absolute."""
    absolute = Path(path).resolve()
    relative = os.path.relpath(absolute)
    return str(absolute) if relative.startswith("..") else relative
