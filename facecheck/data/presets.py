"""Input pipelines in one place: training and evaluation transforms built from a PreprocessConfig.

Training, evaluation, prediction and serving all take their transforms from
here, and checkpoints store the PreprocessConfig, so inference always rebuilds
the evaluation pipeline the model was trained with.

Every pipeline is: source steps (deterministic, per image: JPEG
normalisation, face cropping) -> Resize -> random augmentation (training only) -> tensor,
Normalize. The decode cache stores images after Resize, so it applies
exactly the source steps and Resize of :func:`source_and_resize`.
"""

from __future__ import annotations

import io

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import v2

from facecheck.config import PreprocessConfig

AUGMENTATIONS = ("none", "report", "robust")


class NormalizeJpeg:
    """Re-encode an RGB image as JPEG at one quality, so that every input carries the same compression.

    Removes the shortcut of a class saved at another quality (see `facecheck data inspect`).
    """

    def __init__(self, quality: int) -> None:
        self.quality = quality

    def __call__(self, image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return decoded.convert("RGB")

    def __repr__(self) -> str:
        return f"NormalizeJpeg(quality={self.quality})"


def source_steps(cfg: PreprocessConfig) -> list:
    """Deterministic per-image steps that come before resizing: JPEG normalisation, then face cropping."""
    steps: list = [NormalizeJpeg(cfg.normalize_jpeg)] if cfg.normalize_jpeg else []
    if cfg.face_crop:
        from facecheck.data.faces import FaceCrop

        steps.append(FaceCrop(cfg.face_margin, cfg.no_face))
    return steps


def source_signature(cfg: PreprocessConfig) -> str:
    """Identifies the output of the source steps and Resize, for cache keys."""
    face = f"face{cfg.face_margin}-{cfg.no_face}" if cfg.face_crop else "noface"
    return f"jpeg{cfg.normalize_jpeg or 0}-{face}-size{cfg.image_size}"


def source_and_resize(cfg: PreprocessConfig) -> T.Compose:
    return T.Compose([*source_steps(cfg), T.Resize((cfg.image_size, cfg.image_size))])


def random_steps(cfg: PreprocessConfig) -> list:
    """Training-only augmentation, for PIL images or uint8 tensors alike (torchvision v2)."""
    steps: list = []
    if cfg.augment == "robust":
        # As CNNDetection (Wang et al., CVPR 2020): blur and JPEG re-compression, each half the time.
        steps += [
            v2.RandomApply([v2.GaussianBlur(kernel_size=9, sigma=(0.1, 3.0))], p=0.5),
            v2.RandomApply([v2.JPEG(quality=(30, 100))], p=0.5),
        ]
    if cfg.augment in ("report", "robust"):
        if cfg.hflip_prob > 0:
            steps.append(v2.RandomHorizontalFlip(cfg.hflip_prob))
        if cfg.rotation_degrees > 0:
            steps.append(v2.RandomRotation(cfg.rotation_degrees))
    return steps


def train_transform(cfg: PreprocessConfig) -> T.Compose:
    """The report's training pipeline (Resize, flip, rotation, ToTensor, Normalize) plus the source steps."""
    return T.Compose([source_and_resize(cfg), *random_steps(cfg), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


def eval_transform(cfg: PreprocessConfig) -> T.Compose:
    """The same pipeline without the random steps."""
    return T.Compose([source_and_resize(cfg), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


def train_tensor_transform(cfg: PreprocessConfig) -> v2.Compose:
    """The training pipeline for already resized uint8 CHW tensors (from the decode cache)."""
    return v2.Compose(
        [*random_steps(cfg), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
    )


def eval_tensor_transform(cfg: PreprocessConfig) -> v2.Compose:
    """The evaluation pipeline for already resized uint8 CHW tensors."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))])
