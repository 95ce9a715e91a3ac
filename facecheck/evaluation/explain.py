"""Grad-CAM heatmaps (Captum's LayerGradCam) on each model's ``cam_layer``: where the model looked.

The heatmap is taken for the "fake" output, so warm regions are those that
pushed the model towards calling the image fake, whatever the verdict: on a
"real" verdict they are the traces the model weighed and found too weak. The
PNGs of ``facecheck explain`` say so in words, with the verdict, p_fake and a
colour scale (:func:`explanation_figure`).
"""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facecheck.data.images import load_image
from facecheck.data.transforms import FaceViews, resize_step, source_and_resize
from facecheck.errors import DataError
from facecheck.extras import require
from facecheck.inference.protocol import AnyDetector
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


HEAT_COLOURS = "jet"  # the page's colour scale (index.html) draws the same map


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.6) -> Image.Image:
    """``image`` with ``heatmap`` (same size, values 0..1) blended on top in the 'jet' colour map.

    Each pixel's colour is mixed in as strongly as its heat (up to ``alpha``): where the model found no
    evidence the picture shows as it is, not tinted blue.
    """
    from matplotlib import colormaps

    colours = colormaps[HEAT_COLOURS](heatmap)[..., :3] * 255
    base = np.asarray(image.convert("RGB").resize(heatmap.shape[::-1]), dtype=np.float32)
    weight = (alpha * np.clip(heatmap, 0, 1))[..., None]
    return Image.fromarray((base * (1 - weight) + colours * weight).clip(0, 255).astype(np.uint8))


def heat_meaning(label: str) -> str:
    """What the heat of a Grad-CAM map means, in words, for a picture given ``label``."""
    if label == "fake":
        return "Warm colours: the regions that pushed the model towards 'fake', the evidence for its verdict."
    if label == "real":
        return (
            "Warm colours: the regions that pushed the model towards 'fake', shown even for a 'real' verdict: "
            "this evidence was too weak to change it."
        )
    return "Warm colours: the regions that pushed the model towards 'fake', whatever its verdict."


def explanation_figure(
    view: Image.Image, heatmap: np.ndarray, p_fake: float, label: str, threshold: float, notice: str | None = None
) -> Image.Image:
    """A picture that explains itself: what the model saw and its Grad-CAM overlay side by side at a readable
    size, a colour scale, the verdict with p_fake in the title, and a line saying what the heat means."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; keeps a backend already chosen
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5.8), dpi=100, layout="constrained")
    figure.suptitle(f"verdict: {label}   p_fake = {p_fake:.3f} (threshold {threshold:.2f})", fontsize=15)
    seen, heat = figure.subplots(1, 2)
    seen.imshow(view)
    seen.set_title("what the model saw")
    heat.imshow(overlay(view, heatmap))
    heat.set_title("Grad-CAM: evidence for 'fake'")
    for axes in (seen, heat):
        axes.set_axis_off()
    scale = figure.colorbar(
        matplotlib.cm.ScalarMappable(cmap=colormaps[HEAT_COLOURS], norm=matplotlib.colors.Normalize(0, 1)),
        ax=heat,
        shrink=0.8,
    )
    scale.set_label("evidence for 'fake' (relative to this picture's strongest)")
    words = heat_meaning(label) + (f"\nNote: {notice}" if notice else "")
    figure.supxlabel(
        "\n".join(textwrap.fill(line, 120) for line in words.splitlines()), fontsize=10
    )  # laid out below the panels
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as rendered:
        return rendered.convert("RGB")


def view_and_heatmap(
    detector: AnyDetector, image: Image.Image, model: FaceClassifier | None = None, face: int | None = None
) -> tuple[Image.Image, np.ndarray]:
    """What the model sees of one RGB image (cropped / re-encoded / resized) and its Grad-CAM map for "fake".

    ``model``: a private copy of ``detector.model`` to hook instead (Grad-CAM hooks the model's layers, so a
    thread that explains while others predict needs its own). ``face``: for a model that judges faces, the
    index of the face to explain, as in ``Prediction.faces`` (default: the largest, as the one-step pipeline).
    Raises DataError where the preprocessing does, or when there is no such face.
    """
    network = model if model is not None else detector.model
    if face is None:
        view = source_and_resize(detector.preprocess)(image)
        batch = detector.single_view_transform(image).unsqueeze(0)
        return view, gradcam(network, batch)[0]
    from facecheck.data.faces import crop_box, detect_faces
    from facecheck.inference.predictor import judged_faces

    if not detector.preprocess.face_crop:
        raise DataError("this model judges whole pictures: there is no face to choose")
    views = FaceViews(detector.preprocess, "none")
    normalised = views.normalised(image)
    found = judged_faces(detect_faces(normalised))
    if not 0 <= face < len(found):
        raise DataError(f"there is no face {face} in this picture ({len(found)} judged)")
    crop = normalised.crop(crop_box(found[face], normalised.size, views.margin))
    return resize_step(detector.preprocess)(crop), gradcam(network, views.views(normalised, found[face])[None])[0]


def explain_image(
    detector: AnyDetector, image: Image.Image, model: FaceClassifier | None = None, face: int | None = None
) -> Image.Image:
    """Grad-CAM overlay of one RGB image (or one of its faces), drawn on what the model sees
    (see :func:`view_and_heatmap`)."""
    return overlay(*view_and_heatmap(detector, image, model, face))


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


def explain_files(
    detector: AnyDetector, paths: list[Path], out_dir: Path, threshold: float | None = None
) -> list[dict[str, Any]]:
    """Write a Grad-CAM overlay for each readable image (names from :func:`overlay_names`); one entry per input.

    ``p_fake`` and ``label`` are the detector's own, with its test-time views (as ``predict`` gives them, at
    ``threshold`` when given; a NaN score is an error there, never a verdict); the heatmap is drawn for the plain
    view (the image as it is, not its mirror or crops). An overlay never replaces a file: where its name is taken
    (an earlier overlay, an input) it is numbered (``x-2.gradcam.png``), and links are not followed.
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
            # verdict and notices exactly as `predict` gives them
            (prediction,) = detector.predict([image], threshold=threshold)
            if prediction.error is not None:
                raise DataError(prediction.error)
            p_fake, label = float(prediction.p_fake), str(prediction.label)
            picture = explanation_figure(
                *view_and_heatmap(detector, image),
                p_fake,
                label,
                detector.threshold if threshold is None else threshold,
                prediction.notice,
            )
        except Exception as exc:  # noqa: BLE001 - any input that cannot be read or explained is reported, never fatal
            results.append({"path": str(path), "error": str(exc)})
            continue
        target, stream = create_new_file(out_dir, name, ".gradcam.png")
        with stream:
            picture.save(stream, format="PNG")
        results.append(
            {
                "path": str(path),
                "p_fake": p_fake,
                "label": label,
                "heatmap": str(target),
                "heat_means": heat_meaning(label),
                **({"notice": prediction.notice} if prediction.notice else {}),
            }
        )
    return results
