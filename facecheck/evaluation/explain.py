"""Grad-CAM heatmaps (Captum's LayerGradCam) on each model's ``cam_layer``: where the model looked.

The heatmap is taken for the "fake" output, so warm regions are those that
pushed the model towards calling the image fake.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facecheck.data.images import load_image
from facecheck.data.presets import source_and_resize
from facecheck.extras import require
from facecheck.models import FaceClassifier


def gradcam(model: FaceClassifier, batch: torch.Tensor, target: int = 1) -> np.ndarray:
    """``(B, H, W)`` heatmaps in [0, 1] for ``target`` (1 = fake) on a preprocessed batch."""
    require("captum", "explain")
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    batch = batch.clone().requires_grad_(True)
    with torch.enable_grad():
        attribution = LayerGradCam(model, model.cam_layer).attribute(batch, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(attribution, tuple(batch.shape[-2:]), interpolate_mode="bilinear")
    maps = upsampled[:, 0].detach().float().cpu().numpy()
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, maps / np.maximum(peak, 1e-12), 0.0)


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """``image`` with ``heatmap`` (same size, values 0..1) blended on top in the 'jet' colour map."""
    from matplotlib import colormaps

    colours = (colormaps["jet"](heatmap)[..., :3] * 255).astype(np.uint8)
    base = np.asarray(image.convert("RGB").resize(heatmap.shape[::-1]), dtype=np.float32)
    return Image.fromarray((base * (1 - alpha) + colours * alpha).clip(0, 255).astype(np.uint8))


def explain_image(detector: Any, image: Image.Image, model: FaceClassifier | None = None) -> Image.Image:
    """Grad-CAM overlay of one RGB image, drawn on what the model sees (cropped / re-encoded / resized).

    ``model``: a private copy of ``detector.model`` to hook instead (Grad-CAM hooks the model's layers, so a
    thread that explains while others predict needs its own). Raises DataError where the preprocessing does.
    """
    view = source_and_resize(detector.preprocess)(image)
    batch = detector.single_view_transform(image).unsqueeze(0)
    return overlay(view, gradcam(model if model is not None else detector.model, batch)[0])


def overlay_names(paths: list[Path]) -> list[Path]:
    """Output names, relative to the output folder, that never collide: ``<stem>.gradcam.png`` placed in the
    input's sub-folder below the inputs' common folder (``a/x.jpg`` and ``b/x.jpg`` stay apart), with a
    numbered suffix where two inputs still meet (``x.jpg`` and ``x.png``, or the same file given twice)."""
    resolved = [Path(os.path.abspath(path)) for path in paths]
    common = Path(os.path.commonpath([str(path.parent) for path in resolved])) if resolved else Path()
    taken: set[Path] = set()
    names = []
    for path in resolved:
        folder = path.parent.relative_to(common)
        name, number = folder / f"{path.stem}.gradcam.png", 1
        while name in taken:
            number += 1
            name = folder / f"{path.stem}-{number}.gradcam.png"
        taken.add(name)
        names.append(name)
    return names


def explain_files(detector: Any, paths: list[Path], out_dir: Path) -> list[dict[str, Any]]:
    """Write a Grad-CAM overlay for each readable image (names from :func:`overlay_names`); one entry per input.

    ``p_fake`` and ``label`` are the detector's own, with its test-time views (as ``predict`` gives them); the
    heatmap is drawn for the plain view (the image as it is, not its mirror or crops). An overlay never replaces
    a file: where its name is taken (an earlier overlay, an input) it is numbered (``x-2.gradcam.png``), and
    links are not followed.
    """
    from facecheck.errors import FacecheckError
    from facecheck.files import create_new_file

    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FacecheckError(f"--out {out_dir} is not a folder (or is a link to one): name a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path, name in zip(paths, overlay_names(paths), strict=True):
        try:
            image = load_image(path, detector.min_size)
            picture = explain_image(detector, image)
        except Exception as exc:  # noqa: BLE001 - any input that cannot be read or explained is reported, never fatal
            results.append({"path": str(path), "error": str(exc)})
            continue
        p_fake = float(detector.predict_tensor(detector.transform(image).unsqueeze(0))[0])
        if not math.isfinite(p_fake):  # an error, never a verdict (as in predict)
            results.append({"path": str(path), "error": "the model gave no finite score (NaN): its card is unusable"})
            continue
        target, stream = create_new_file(out_dir, name, ".gradcam.png")
        with stream:
            picture.save(stream, format="PNG")
        results.append(
            {
                "path": str(path),
                "p_fake": p_fake,
                "label": detector.card.decide(p_fake, detector.threshold),
                "heatmap": str(target),
            }
        )
    return results
