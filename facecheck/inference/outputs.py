"""Turning a model's logits into answers: views averaged, calibrated ``p_fake``.

These sit below everything that scores images (inference, training's
monitoring, evaluation), so that all of them compute the same numbers.
Verdicts from ``p_fake`` are the model card's job (:meth:`ModelCard.label`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

Logits = TypeVar("Logits", np.ndarray, torch.Tensor)


def mean_over_views(run: Callable[[torch.Tensor], Logits], batch: torch.Tensor) -> Logits:
    """Logits of a ``(B, 3, H, W)`` batch, or of a ``(B, V, 3, H, W)`` batch of test-time views averaged per image."""
    if batch.dim() != 5:
        return run(batch)
    images, views = batch.shape[:2]
    logits = run(batch.flatten(0, 1))
    return logits.reshape(images, views, -1).mean(1)


def p_fake_of(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax probability of the fake class, after dividing the logits by ``temperature``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp[:, 1] / exp.sum(axis=1)


def near_decisions(p_fake: np.ndarray, points: Sequence[float], margin: float) -> np.ndarray:
    """Which ``p_fake`` lie within ``margin`` of a decision point, measured in calibrated logits
    (``log(p / (1 - p))``, the logit difference over the temperature), where a lower precision's error is
    about the same size at every p."""
    with np.errstate(divide="ignore"):  # p of 0 or 1: infinitely far from every point
        z = np.log(p_fake) - np.log1p(-p_fake)
        at = np.log(np.asarray(points, dtype=float)) - np.log1p(-np.asarray(points, dtype=float))
    return (np.abs(z[:, None] - at[None, :]) < margin).any(axis=1)
