"""Grad-CAM heatmaps (Captum's LayerGradCam) on each model's ``cam_layer``: where the model looked.

The heatmap is taken for the "fake" output, so warm regions are those that
pushed the model towards calling the image fake.
"""

from __future__ import annotations

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


def explain_files(detector: Any, paths: list[Path], out_dir: Path) -> list[dict[str, Any]]:
    """Write ``<name>.gradcam.png`` for each readable image; returns one entry per input."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        try:
            image = load_image(path, detector.min_size)
            picture = explain_image(detector, image)
        except Exception as exc:  # noqa: BLE001 - any input that cannot be read or explained is reported, never fatal
            results.append({"path": str(path), "error": str(exc)})
            continue
        p_fake = float(detector.predict_tensor(detector.single_view_transform(image).unsqueeze(0))[0])
        target = out_dir / f"{Path(path).stem}.gradcam.png"
        picture.save(target)
        results.append(
            {
                "path": str(path),
                "p_fake": p_fake,
                "label": detector.class_names[int(p_fake >= detector.threshold)],
                "heatmap": str(target),
            }
        )
    return results
