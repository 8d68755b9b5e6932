"""stylize: batch and video neural style transfer."""

__version__ = "0.1.0"

from .errors import EnvironmentProblem, InputError, StylizeError
from .settings import StyleSettings
from .stylize import Progress, Style, StylizeResult, Stylizer, get_stylizer, stylize_image

__all__ = [
    "EnvironmentProblem",
    "InputError",
    "Progress",
    "Style",
    "StyleSettings",
    "StylizeError",
    "StylizeResult",
    "Stylizer",
    "get_stylizer",
    "stylize_image",
]
