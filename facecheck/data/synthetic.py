"""A small synthetic real-vs-fake face set, generated deterministically.

It lets every command run on a fresh machine with no data. The "faces" are
drawn cartoons: both classes share the same random pose, skin tone and
background; the fakes carry two tell-tale generator traces, mismatched eye
colours and a faint periodic (checkerboard) upsampling pattern. It tests the
plumbing, not the science: results on it say nothing about real photographs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from facecheck.paths import cache_folder

SYNTHETIC_VERSION = 1


def default_synthetic_dir(per_class: int, seed: int) -> Path:
    return cache_folder("synthetic") / f"v{SYNTHETIC_VERSION}-n{per_class}-seed{seed}"


def draw_face(rng: np.random.Generator, fake: bool, size: int = 128) -> Image.Image:
    top = rng.uniform(60, 200, 3)
    bottom = rng.uniform(60, 200, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    background = (top * (1 - ramp) + bottom * ramp) * np.ones((size, size, 3))
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx, cy = size / 2 + rng.uniform(-8, 8), size / 2 + rng.uniform(-6, 6)
    rx, ry = rng.uniform(0.28, 0.36) * size, rng.uniform(0.36, 0.44) * size
    skin = tuple(int(v) for v in rng.uniform([150, 100, 80], [240, 200, 170]))
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=skin)
    eye_y = cy - ry * 0.25
    eye_dx = rx * 0.45
    eye_r = size * 0.05
    iris = tuple(int(v) for v in rng.uniform(20, 140, 3))
    # Real faces: both irises the same colour; fakes: the second one differs.
    other = tuple(int(v) for v in rng.uniform(20, 140, 3)) if fake else iris
    for dx, colour in ((-eye_dx, iris), (eye_dx, other)):
        draw.ellipse([cx + dx - eye_r * 1.6, eye_y - eye_r, cx + dx + eye_r * 1.6, eye_y + eye_r], fill=(250, 250, 250))
        draw.ellipse([cx + dx - eye_r, eye_y - eye_r, cx + dx + eye_r, eye_y + eye_r], fill=colour)
    mouth_y = cy + ry * 0.45
    mouth_w = rx * rng.uniform(0.4, 0.7)
    draw.arc([cx - mouth_w, mouth_y - 8, cx + mouth_w, mouth_y + 8], 10, 170, fill=(120, 40, 40), width=3)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0, 4, pixels.shape)  # sensor-like noise on both classes
    if fake:
        yy, xx = np.mgrid[0:size, 0:size]
        pixels += 6.0 * (((yy // 2 + xx // 2) % 2) * 2 - 1)[..., None]
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_synthetic_dataset(out_dir: Path | None = None, per_class: int = 60, seed: int = 0) -> Path:
    """Write ``real/`` and ``fake/`` PNGs under ``out_dir`` (cached: done once) and return it."""
    out_dir = Path(out_dir) if out_dir is not None else default_synthetic_dir(per_class, seed)
    if (out_dir / ".complete").exists():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so an interrupted run leaves no half set.
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=out_dir.parent))
    rng = np.random.default_rng(seed)
    for index in range(per_class):
        for name, fake in (("real", False), ("fake", True)):
            (staging / name).mkdir(exist_ok=True)
            draw_face(rng, fake).save(staging / name / f"{name}_{index:04d}.png")
    (staging / ".complete").write_text("ok\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir
