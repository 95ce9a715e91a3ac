"""Reading images safely: any common mode becomes 8-bit RGB, bad files become clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from facecheck.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})

# Decompression-bomb guard: a photo of a face never needs more than this.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Truncated files must fail, not be silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert grayscale, palette, RGBA, CMYK and 16-bit images to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit single channel: scale the actual range to 0..255
        # (plain convert("L") clips everything above 255 to white).
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


def load_image(path: str | Path, min_size: int = 1) -> Image.Image:
    """Decode ``path`` fully into an RGB image or raise :class:`DataError`."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                if getattr(opened, "n_frames", 1) > 1:
                    opened.seek(0)  # animated images: the first frame is the picture
                opened.load()
                image = to_rgb(opened)
                if image is opened:
                    image = opened.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image is too large (limit {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({exc})") from None
    if min(image.size) < min_size:
        raise DataError(f"{path}: image is too small ({image.size[0]}x{image.size[1]}, minimum {min_size}px a side)")
    return image
