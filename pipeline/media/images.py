"""Reading and atomically writing still images (PIL; no torch)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from .files import atomic_write, require_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 80_000_000  # 80 MP: above any 61 MP camera; decoding and converting a 10000 x 10000 image took 4.5 GB
MIN_EDGE = 16  # 2**4: VGG19's four poolings before relu5_1
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def load_image(path: str | Path) -> Image.Image:
    """Decode fully (so truncated files fail here), honour EXIF orientation, return 8-bit RGB:
    16-bit and 32-bit greyscale scaled (not clipped), transparency over white, CMYK converted.
    Images over the pixel budget are refused from their header, before decoding."""
    path = require_file(path, "an image file")
    try:
        with _opened(path) as opened:
            _check_pixel_budget(opened.size, path)
            opened.load()
            return _as_rgb(ImageOps.exif_transpose(opened))
    except UnidentifiedImageError:
        raise InputError("not a readable image (unsupported format or not an image)", path) from None
    except Image.DecompressionBombError:
        raise InputError(f"declares more than {MAX_PIXELS // 10**6} MP; downscale it first", path) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"corrupt or truncated image ({error})", path) from None


def _check_pixel_budget(size: tuple[int, int], path: Path) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InputError(f"is {width}x{height} ({width * height / 1e6:.0f} MP), over the {MAX_PIXELS // 10**6} MP budget "
                         "(decoding alone would take gigabytes); downscale it first", path)


def _as_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Wide greyscale: PIL's convert clips at 255, turning a 16-bit photo white.
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" else 65535.0 if values.max() > 255 else 255.0
        return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def check_fits_network(height: int, width: int, long_edge: int, what: str | Path) -> None:
    """VGG19 halves an image four times before its deepest taps: its short side at the working
    long edge must keep MIN_EDGE pixels. InputError naming `what` otherwise."""
    short = min(fit_long_edge(height, width, long_edge))
    if short < MIN_EDGE:
        raise InputError(f"is {width}x{height}: at {long_edge} px its short side is {short} px, and VGG19 needs at "
                         f"least {MIN_EDGE} (four poolings); crop it nearer to square or raise size", what)


def displayed_size(path: str | Path) -> tuple[int, int]:
    """(height, width) as shown (EXIF orientation applied), from the header alone."""
    with _opened(path) as image:
        width, height = ImageOps.exif_transpose(image).size
    return height, width


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    """PIL's own decompression-bomb warning silenced: our pixel budget says it in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            yield image


def fit_long_edge(height: int, width: int, long_edge: int) -> tuple[int, int]:
    scale = long_edge / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_image_output(path: str | Path) -> str:
    """The PIL format an output path's suffix names; InputError before any work if none."""
    suffix = Path(path).suffix.lower()
    if suffix not in _PIL_FORMATS:
        raise InputError(f"unsupported output format {suffix or '(none)'}: use one of {', '.join(IMAGE_SUFFIXES)}", path)
    return _PIL_FORMATS[suffix]


def save_image(image: Image.Image, path: str | Path, quality: int = 95, durable: bool = True,
               png_compression: int | None = None) -> Path:
    """Write atomically in the format the suffix names (flushed to the disk unless not `durable`);
    a PNG at zlib level `png_compression` (0-9) where given, else PIL's default."""
    path = Path(path)
    pil_format = check_image_output(path)
    options = {"quality": quality} if pil_format in ("JPEG", "WEBP") else {}
    if pil_format == "PNG" and png_compression is not None:
        options["compress_level"] = png_compression
    return atomic_write(path, lambda stream: image.save(stream, format=pil_format, **options), durable)
