"""Checking and decoding one upload: type from its content, then the rules every entry point shares."""

from __future__ import annotations

import io

from PIL import Image

from facecheck.data.images import ImageTooLarge, ImageTooSmall, read_image
from facecheck.errors import DataError
from facecheck.serving.errors import ApiError

# Magic numbers of the formats we accept; anything else is refused unread.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)


def sniff(data: bytes) -> str | None:
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def header_pixels(data: bytes) -> int:
    """Width x height from an upload's header, nothing decoded (0 where it is not an image: decoding says why)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                width, height = opened.size
    except Exception:  # noqa: BLE001 - any unreadable header is left to decode_upload's own error
        return 0
    return width * height


def decode_upload(data: bytes, max_bytes: int, max_pixels: int, min_size: int) -> Image.Image:
    """Validate and decode one uploaded image, or raise :class:`ApiError` with a 4xx status.

    Past the type check this is :func:`facecheck.data.images.read_image`, the
    CLI's own reader: the same pixel limit from the header, the first frame of
    an animated image, the same minimum size.
    """
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    if len(data) > max_bytes:
        raise ApiError(413, "file_too_large", f"upload is larger than {max_bytes} bytes")
    if sniff(data) is None:
        raise ApiError(415, "unsupported_type", "not a JPEG, PNG, WebP or BMP image (judged by its content)")
    try:
        return read_image(io.BytesIO(data), min_size, max_pixels, name="upload")
    except ImageTooLarge as exc:
        raise ApiError(413, "too_many_pixels", str(exc)) from None
    except ImageTooSmall as exc:
        raise ApiError(422, "image_too_small", str(exc)) from None
    except DataError as exc:
        raise ApiError(422, "corrupt_image", str(exc)) from None
