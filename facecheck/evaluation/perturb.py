"""Perturbations for robustness checks: `--perturb jpeg:90,70 blur:1,2 resize:0.5`.

Each is applied to the decoded image before the model's own preprocessing,
as a re-saved, blurred or downscaled copy of the photo would be.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageFilter

from facecheck.errors import ConfigError


@dataclass(frozen=True)
class Perturbation:
    kind: str
    severity: float
    apply: Callable[[Image.Image], Image.Image]

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.severity:g}"


def _jpeg(quality: float) -> Callable[[Image.Image], Image.Image]:
    if not 1 <= quality <= 100 or quality != int(quality):
        raise ConfigError(f"jpeg quality must be a whole number from 1 to 100, got {quality:g}")

    def apply(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(quality))
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def _blur(sigma: float) -> Callable[[Image.Image], Image.Image]:
    if sigma <= 0:
        raise ConfigError(f"blur sigma must be positive, got {sigma:g}")
    return lambda image: image.filter(ImageFilter.GaussianBlur(sigma))


def _resize(scale: float) -> Callable[[Image.Image], Image.Image]:
    if not 0 < scale <= 4:
        raise ConfigError(f"resize scale must be in (0, 4], got {scale:g}")

    def apply(image: Image.Image) -> Image.Image:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.BICUBIC)

    return apply


KINDS = {"jpeg": _jpeg, "blur": _blur, "resize": _resize}


def parse_perturbations(specs: list[str]) -> list[Perturbation]:
    """``["jpeg:90,70", "blur:1"]`` -> one Perturbation per kind and severity."""
    result = []
    for spec in specs:
        kind, sep, values = spec.partition(":")
        if not sep or kind not in KINDS or not values:
            raise ConfigError(
                f"cannot read perturbation {spec!r}: use KIND:V1,V2 with KIND one of {', '.join(KINDS)} "
                "(e.g. jpeg:90,50 blur:1,2 resize:0.5)"
            )
        for value in values.split(","):
            try:
                severity = float(value)
            except ValueError:
                raise ConfigError(f"cannot read {value!r} in perturbation {spec!r} as a number") from None
            result.append(Perturbation(kind, severity, KINDS[kind](severity)))
    return result
