"""Classification metrics with fake as the positive class, from scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

from facecheck.data.discovery import FAKE, REAL


def classification_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of probabilities ``p_fake`` against true ``labels`` (1 = fake).

    A sample is called fake when ``p_fake >= threshold``. ``roc_auc`` is None
    when only one class is present (it is undefined there).
    ``confusion_matrix`` rows are the true class, columns the predicted one,
    in the order [real, fake].
    """
    labels = np.asarray(labels, dtype=int)
    p_fake = np.asarray(p_fake, dtype=float)
    if labels.shape != p_fake.shape or labels.ndim != 1:
        raise ValueError("labels and p_fake must be 1-D arrays of the same length")
    if labels.size == 0:
        raise ValueError("no samples to score")
    predicted = (p_fake >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "n": int(labels.size),
        "n_real": int((labels == REAL).sum()),
        "n_fake": int((labels == FAKE).sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, predicted)) if both_classes else None,
        "precision": float(skm.precision_score(labels, predicted, pos_label=FAKE, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, pos_label=FAKE, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, pos_label=FAKE, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(labels, p_fake)) if both_classes else None,
        "confusion_matrix": skm.confusion_matrix(labels, predicted, labels=[REAL, FAKE]).tolist(),
    }
