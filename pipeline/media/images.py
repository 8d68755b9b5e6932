"""Reading and atomically writing still images (PIL; no torch)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from .files import atomic_write, require_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def load_image(path: str | Path) -> Image.Image:
    """Decode fully (so truncated files fail here), honour EXIF orientation, return RGB."""
    path = require_file(path, "an image file")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return image.convert("RGB")
    except UnidentifiedImageError:
        raise InputError("not a readable image (unsupported format or not an image)", path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(f"corrupt or truncated image ({error})", path) from None


def displayed_size(path: str | Path) -> tuple[int, int]:
    """(height, width) as shown (EXIF orientation applied), from the header alone."""
    with Image.open(path) as image:
        width, height = ImageOps.exif_transpose(image).size
    return height, width


def fit_long_edge(height: int, width: int, long_edge: int) -> tuple[int, int]:
    scale = long_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_image_output(path: str | Path) -> str:
    """The PIL format an output path's suffix names; InputError before any work if none."""
    suffix = Path(path).suffix.lower()
    if suffix not in _PIL_FORMATS:
        raise InputError(f"unsupported output format {suffix or '(none)'}: use one of {', '.join(IMAGE_SUFFIXES)}", path)
    return _PIL_FORMATS[suffix]


def save_image(image: Image.Image, path: str | Path, quality: int = 95) -> Path:
    """Write atomically in the format the suffix names."""
    path = Path(path)
    pil_format = check_image_output(path)
    options = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda stream: image.save(stream, format=pil_format, **options))
