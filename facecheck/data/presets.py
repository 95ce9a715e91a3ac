"""Input pipelines in one place: training and evaluation transforms built from a PreprocessConfig.

Training, evaluation, prediction and serving all take their transforms from
here, and checkpoints store the PreprocessConfig, so inference always rebuilds
the evaluation pipeline the model was trained with.
"""

from __future__ import annotations

import torch
from torchvision import transforms as T
from torchvision.transforms import v2

from facecheck.config import PreprocessConfig


def train_transform(cfg: PreprocessConfig) -> T.Compose:
    """The report's training pipeline: Resize, flip, rotation, ToTensor, Normalize."""
    steps: list[object] = [T.Resize((cfg.image_size, cfg.image_size))]
    if cfg.hflip_prob > 0:
        steps.append(T.RandomHorizontalFlip(cfg.hflip_prob))
    if cfg.rotation_degrees > 0:
        steps.append(T.RandomRotation(cfg.rotation_degrees))
    steps += [T.ToTensor(), T.Normalize(cfg.mean, cfg.std)]
    return T.Compose(steps)


def eval_transform(cfg: PreprocessConfig) -> T.Compose:
    """The same pipeline without the random steps."""
    return T.Compose([T.Resize((cfg.image_size, cfg.image_size)), T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])


def train_tensor_transform(cfg: PreprocessConfig) -> v2.Compose:
    """The training pipeline for already resized uint8 CHW tensors (from the decode cache)."""
    steps: list[torch.nn.Module] = []
    if cfg.hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(cfg.hflip_prob))
    if cfg.rotation_degrees > 0:
        steps.append(v2.RandomRotation(cfg.rotation_degrees))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))]
    return v2.Compose(steps)


def eval_tensor_transform(cfg: PreprocessConfig) -> v2.Compose:
    """The evaluation pipeline for already resized uint8 CHW tensors."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(cfg.mean), list(cfg.std))])


def input_shape(cfg: PreprocessConfig, batch: int = 1) -> torch.Size:
    return torch.Size((batch, 3, cfg.image_size, cfg.image_size))
