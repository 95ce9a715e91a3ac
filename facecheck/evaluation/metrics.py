"""Classification metrics with fake as the positive class, from scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np

from facecheck.data.discovery import FAKE, REAL


def called_fake(p_fake: np.ndarray, threshold: float) -> np.ndarray:
    """1 where a score is called fake at ``threshold`` (the metrics' view of the card's decision rule, without
    its uncertain band: a metric needs two classes)."""
    return (np.asarray(p_fake, dtype=float) >= threshold).astype(int)


def classification_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of probabilities ``p_fake`` against true ``labels`` (1 = fake).

    A sample is called fake when ``p_fake >= threshold``. ``roc_auc`` is None
    when only one class is present (it is undefined there).
    ``confusion_matrix`` rows are the true class, columns the predicted one,
    in the order [real, fake].
    """
    # scikit-learn is imported where it is used (here and below): it costs about 1 s of every start.
    from sklearn import metrics as skm

    labels = np.asarray(labels, dtype=int)
    p_fake = np.asarray(p_fake, dtype=float)
    if labels.shape != p_fake.shape or labels.ndim != 1:
        raise ValueError("labels and p_fake must be 1-D arrays of the same length")
    if labels.size == 0:
        raise ValueError("no samples to score")
    predicted = called_fake(p_fake, threshold)
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


def ranking_metrics(labels: np.ndarray, p_fake: np.ndarray) -> dict[str, Any]:
    """Threshold-free and probability-quality metrics (need both classes present).

    ``eer`` is the equal error rate: the point of the ROC curve where the
    false-positive rate equals the false-negative rate (the mean of the two
    at the closest point), with the threshold there. ``tpr_at_fpr_*`` is the
    best true-positive rate with a false-positive rate at most 1% / 5%.
    ``ece`` is the expected calibration error of ``p_fake`` over 10 equal-width
    bins: the bin-size-weighted gap between mean predicted and observed fake rate.
    """
    from sklearn import metrics as skm

    labels = np.asarray(labels, dtype=int)
    p_fake = np.asarray(p_fake, dtype=float)
    if len(np.unique(labels)) < 2:
        return dict.fromkeys(
            ("average_precision", "eer", "eer_threshold", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct"), None
        ) | probability_metrics(labels, p_fake)
    fpr, tpr, thresholds = skm.roc_curve(labels, p_fake, pos_label=FAKE)
    fnr = 1 - tpr
    closest = int(np.argmin(np.abs(fnr - fpr)))
    return {
        "average_precision": float(skm.average_precision_score(labels, p_fake, pos_label=FAKE)),
        "eer": float((fpr[closest] + fnr[closest]) / 2),
        "eer_threshold": float(min(thresholds[closest], 1.0)),
        "tpr_at_fpr_1pct": float(tpr[fpr <= 0.01].max()),
        "tpr_at_fpr_5pct": float(tpr[fpr <= 0.05].max()),
    } | probability_metrics(labels, p_fake)


def probability_metrics(labels: np.ndarray, p_fake: np.ndarray, bins: int = 10) -> dict[str, float]:
    from sklearn import metrics as skm

    clipped = np.clip(p_fake, 1e-7, 1 - 1e-7)
    return {
        "log_loss": float(skm.log_loss(labels, clipped, labels=[REAL, FAKE])),
        "brier": float(skm.brier_score_loss(labels, p_fake, pos_label=FAKE)),
        "ece": expected_calibration_error(labels, p_fake, bins),
    }


def expected_calibration_error(labels: np.ndarray, p_fake: np.ndarray, bins: int = 10) -> float:
    # Bin i holds p in [i/bins, (i+1)/bins); p == 1 falls in the last bin.
    index = np.minimum((np.asarray(p_fake) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(float(np.mean(labels[members])) - float(np.mean(p_fake[members])))
    return float(total)


def roc_auc_of_rows(labels: np.ndarray, p_fake: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``labels`` (0/1) and ``p_fake`` (both (rows, n)); NaN where a row has one class.

    The Mann-Whitney form (rank sum of the fakes, ties at their average rank): the same number as
    ``sklearn.metrics.roc_auc_score`` row by row (tested), for all rows in one pass.
    """
    from scipy.stats import rankdata

    ranks = rankdata(p_fake, axis=1)
    fakes = labels.sum(axis=1, dtype=float)
    reals = labels.shape[1] - fakes
    both = (fakes > 0) & (reals > 0)
    rank_sum = (ranks * labels).sum(axis=1)
    auc = (rank_sum - fakes * (fakes + 1) / 2) / np.where(both, fakes * reals, 1.0)
    return np.where(both, auc, np.nan)


def bootstrap_intervals(
    labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5, resamples: int = 1000, seed: int = 0
) -> dict[str, list[float] | None]:
    """95% percentile-bootstrap intervals of accuracy and ROC AUC (resampling images with replacement).

    Resamples are drawn and scored many at a time: one sklearn call per resample took longer than scoring
    the images (4.8 s of 1000 resamples for 512 images, against 7.7 s of predict).
    """
    labels = np.asarray(labels, dtype=int)
    p_fake = np.asarray(p_fake, dtype=float)
    rng = np.random.default_rng(seed)
    correct = ((p_fake >= threshold).astype(int) == labels).astype(float)
    accuracies, aucs = [], []
    per_pass = max(1, min(resamples, 2_000_000 // max(1, len(labels))))  # at most ~16 MB of each array a pass
    for start in range(0, resamples, per_pass):
        sample = rng.integers(0, len(labels), (min(per_pass, resamples - start), len(labels)))
        accuracies.append(correct[sample].mean(axis=1))
        aucs.append(roc_auc_of_rows(labels[sample], p_fake[sample]))
    accuracy = np.concatenate(accuracies)
    auc = np.concatenate(aucs)
    auc = auc[np.isfinite(auc)]  # resamples with one class have no ROC AUC
    interval = lambda values: [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]  # noqa: E731
    return {"accuracy_ci95": interval(accuracy), "roc_auc_ci95": interval(auc) if len(auc) else None}


def full_metrics(labels: np.ndarray, p_fake: np.ndarray, threshold: float = 0.5, resamples: int = 1000) -> dict:
    """Everything `facecheck evaluate --json` reports for one set of scores."""
    result = classification_metrics(labels, p_fake, threshold) | ranking_metrics(labels, p_fake)
    if resamples > 0:
        result |= bootstrap_intervals(labels, p_fake, threshold, resamples)
    return result


# Fewer images than this make every metric too uncertain to act on.
FEW_FOR_METRICS = 50


def result_warnings(metrics: dict[str, Any], where: str) -> list[str]:
    """Plain-words warnings when a number should not be trusted (training's test, evaluate, the report)."""
    warnings = []
    n = metrics.get("n", 0)
    if n and n < FEW_FOR_METRICS:
        warnings.append(f"only {n} {where} images: every metric here has a wide margin of error")
    matrix = metrics.get("confusion_matrix")
    if n > 1 and matrix:
        predicted_fake = matrix[0][1] + matrix[1][1]  # the "predicted fake" column
        if predicted_fake in (0, n):
            label = "fake" if predicted_fake == n else "real"
            warnings.append(f"the model calls every {where} image {label}: its threshold or training failed")
    chance = chance_words(metrics)
    if chance:
        warnings.append(chance)
    return warnings


def chance_words(metrics: dict[str, Any]) -> str | None:
    """In words, when the ROC AUC says the model does no better than chance (its 95% interval holds 0.5) or ranks
    the classes the wrong way round; None otherwise (or without an interval to judge by)."""
    auc, interval = metrics.get("roc_auc"), metrics.get("roc_auc_ci95")
    if auc is None or not interval:
        return None
    low, high = interval
    shown = f"ROC AUC {auc:.3f} (95% interval {low:.3f}-{high:.3f})"
    if low <= 0.5 <= high:
        return f"{shown} includes 0.5: on these images the model does no better than chance"
    if high < 0.5:
        return f"{shown} is below 0.5: the model ranks these images the wrong way round (worse than chance)"
    return None
