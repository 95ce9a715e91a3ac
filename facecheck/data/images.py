"""Reading images safely: any common mode becomes upright 8-bit RGB, bad files become clear errors."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facecheck.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

# Decompression-bomb guard: a photo of a face never needs more than this.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Truncated files must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
ORIENTATION_TAG = 0x0112  # EXIF Orientation


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


class ImageTooLarge(DataError):
    """More pixels than the limit allows (judged from the header, before decoding)."""


class ImageTooSmall(DataError):
    """Smaller than the model's minimum side."""


class UnreadableImage(DataError):
    """Not an image, an unknown format, or a corrupt / truncated file."""


def _sixteen_bit_to_rgb(image: Image.Image) -> Image.Image:
    # Scale the actual range to 0..255 (plain convert("L") clips everything above 255 to white)
    # through a 65,536-entry table: 1 byte per pixel out, no full-size float copies.
    array = np.asarray(image)
    low, high = int(array.min()), int(array.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    table = ((np.arange(65536, dtype=np.float64) - low) * scale).clip(0, 255).astype(np.uint8)
    return Image.fromarray(table[array.astype(np.uint16, copy=False)], mode="L").convert("RGB")


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag (phone photos are often stored sideways with a tag saying so).

    Returns ``image`` itself when there is nothing to turn; a malformed EXIF block leaves the pixels as stored.
    """
    try:
        orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken EXIF must not make a readable picture unreadable
        return image
    if orientation in (None, 1) or not isinstance(orientation, int):
        return image
    try:
        turned = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - as above
        return image
    return image if turned is None else turned


def to_rgb(image: Image.Image) -> Image.Image:
    """Turn upright (EXIF orientation), then convert grayscale, palette, RGBA, CMYK and 16-bit images to 8-bit RGB."""
    image = upright(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return _sixteen_bit_to_rgb(image)
    if image.mode in ("I", "F"):
        # 32-bit single channel: scale the actual range to 0..255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        array8 = ((array - low) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(array8, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Composite transparency onto white so hidden pixels cannot carry signal.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_regular_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (a FIFO named x.jpg would block a plain open)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{path}: is a folder, not an image")
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: not a regular file (a pipe, socket or device), not read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def header_pixels(path: str | Path) -> int:
    """Width x height of the image file ``path`` as its header states them (nothing decoded; ~0.05 ms), or 0
    when the header cannot be read: :func:`read_image` then says why, in its place. Silent: what Pillow warns
    of (a bomb, corrupt EXIF) is said once, when the file is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_regular_file(Path(path)) as handle, Image.open(handle) as opened:
                return opened.width * opened.height
    except (DataError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 0


def read_image(
    source: str | Path | BinaryIO,
    min_size: int = 1,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode one image into 8-bit RGB under the rules every entry point shares, or raise :class:`DataError`.

    The size is checked from the header before any pixel is decoded; an
    animated image is scored on its first frame; a side under ``min_size``
    is refused. The CLI, the Python API and the service all come through here.
    """
    where = name if name is not None else str(source)
    handle: BinaryIO | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if isinstance(source, (str, Path)):
                handle = open_regular_file(Path(source))  # a FIFO named x.jpg must not block the reader
            with Image.open(handle if handle is not None else source) as opened:
                width, height = opened.size
                # From the header, before decoding: a bomb is refused before it is expanded. JPEG, PNG, WebP
                # and BMP decode to at most 4 bytes a pixel (16-bit is reduced through a table, not through
                # float copies), so this bounds the memory and time of a decode too.
                if width * height > max_pixels:
                    raise ImageTooLarge(f"{where}: image is too large ({width}x{height}; limit {max_pixels:,} pixels)")
                if getattr(opened, "n_frames", 1) > 1:
                    opened.seek(0)  # animated images: the first frame is the picture
                opened.load()
                image = to_rgb(opened)
                if image is opened and getattr(opened, "n_frames", 1) > 1:
                    # Detached from the file's other frames; a single decoded frame owns its pixels already
                    # (a copy of a 4000 px photo costs ~35 ms, benchmarks/scoring_speed.py).
                    image = opened.copy()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a folder, not an image") from None
    except PermissionError:
        raise DataError(f"{where}: permission denied") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"{where}: image is too large (limit {max_pixels:,} pixels)") from None
    except UnidentifiedImageError:
        raise UnreadableImage(f"{where}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(f"{where}: corrupt or truncated image ({str(exc)[:200]})") from None
    finally:
        if handle is not None:
            handle.close()
    if min(image.size) < min_size:
        raise ImageTooSmall(
            f"{where}: image is too small ({image.size[0]}x{image.size[1]}, minimum {min_size}px a side)"
        )
    return image


def load_image(path: str | Path, min_size: int = 1) -> Image.Image:
    """Decode ``path`` fully into an upright RGB image or raise :class:`DataError`."""
    return read_image(Path(path), min_size)
