"""Running a model over a data loader: probabilities, labels and mean loss."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facecheck.compute import autocast, to_memory_format


@torch.inference_mode()
def score_loader(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    progress: bool = False,
    desc: str = "scoring",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Return ``(p_fake, labels, mean cross-entropy)`` over ``loader``."""
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    probabilities: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    total_loss = 0.0
    for images, targets in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        images, targets = to_memory_format(images.to(device), channels_last), targets.to(device)
        with autocast(device, amp_dtype):
            logits = model(images).float()
        total_loss += float(loss_fn(logits, targets))
        probabilities.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
        labels.append(targets.cpu().numpy())
    count = sum(len(batch) for batch in labels)
    return np.concatenate(probabilities), np.concatenate(labels), total_loss / max(count, 1)
