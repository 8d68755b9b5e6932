"""stylize: batch and video neural style transfer.

Light names (settings, errors) import at once; the engine's load torch, so they are
imported on first use: `import pipeline` alone never loads torch.
"""

from __future__ import annotations

import importlib

from .errors import EnvironmentProblem, InputError, StylizeError
from .settings import Style, StyleSettings, VideoSettings
from .version import __version__

_LAZY = {
    "Progress": "pipeline.engine.stylize",
    "StylizeResult": "pipeline.engine.stylize",
    "evaluate": "pipeline.engine.stylize",
    "verdict": "pipeline.engine.judge",
    "stylize_image": "pipeline.engine.stylize",
    "stylize_image_file": "pipeline.engine.engines",
    "stylize_video": "pipeline.video.stylize",
    "run_manifest": "pipeline.batch.runner",
}

__all__ = ["__version__", "EnvironmentProblem", "InputError", "Style", "StyleSettings", "StylizeError", "VideoSettings", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
