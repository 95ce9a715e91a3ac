"""Running a model over a data loader: logits or probabilities, labels and mean loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facecheck.compute import autocast, to_memory_format
from facecheck.inference.outputs import mean_over_views, p_fake_of


@torch.inference_mode()
def loader_logits(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    progress: bool = False,
    desc: str = "scoring",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(logits (N, 2), labels (N,))`` of every batch of ``loader`` (test-time views averaged)."""
    model.eval()
    logits: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    def run(images: torch.Tensor) -> torch.Tensor:
        images = to_memory_format(images.to(device), channels_last)
        with autocast(device, amp_dtype):
            return model(images).float()

    for images, targets in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        logits.append(mean_over_views(run, images).cpu().numpy())
        labels.append(targets.numpy())
    if not logits:  # an empty stream (a process whose validation shard share is empty)
        return np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(logits), np.concatenate(labels)


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    return float(nn.functional.cross_entropy(torch.from_numpy(logits / temperature), torch.from_numpy(labels)))


def score_loader(
    model: nn.Module, loader: DataLoader, device: torch.device, temperature: float = 1.0, **options: Any
) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(p_fake, labels, mean cross-entropy)`` over ``loader``; ``options`` go to :func:`loader_logits`."""
    logits, labels = loader_logits(model, loader, device, **options)
    return p_fake_of(logits, temperature), labels, mean_cross_entropy(logits, labels, temperature)
