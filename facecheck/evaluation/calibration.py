"""Calibration: temperature scaling of the logits and a decision threshold, fitted on validation data.

Temperature scaling (Guo et al., 2017) divides the logits by one number T
chosen to minimise the validation log loss: probabilities become honest
without changing the ranking (ROC AUC is unchanged). The threshold is the one
that maximises balanced accuracy on validation (the midpoint of the best
interval: Youden's J), or the smallest one whose false-positive rate on
validation reals is at most a target. The ``uncertain`` band is the interval
around the threshold that holds the validation images closest to it, grown
until the decisions outside it reach a target accuracy (at most a fifth of the
validation images fall inside).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facecheck.data.discovery import REAL
from facecheck.errors import DataError
from facecheck.evaluation.scoring import mean_cross_entropy
from facecheck.inference.outputs import p_fake_of

TEMPERATURE_BOUNDS = (0.05, 20.0)
BAND_TARGET_ACCURACY = 0.95
BAND_MAX_FRACTION = 0.2


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the mean cross-entropy of ``logits / T``."""
    from scipy.optimize import minimize_scalar  # imported when used, as scikit-learn is

    result = minimize_scalar(
        lambda log_t: mean_cross_entropy(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])),
        method="bounded",
    )
    return float(np.exp(result.x))


def threshold_for_fpr(p_fake: np.ndarray, labels: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold whose false-positive rate (reals called fake) is at most ``target_fpr``."""
    if not 0 <= target_fpr < 1:
        raise DataError("--target-fpr must be in [0, 1)")
    reals = np.sort(p_fake[labels == REAL])
    if reals.size == 0:
        raise DataError("choosing a threshold for a false-positive rate needs real images in the validation split")
    allowed = int(np.floor(target_fpr * reals.size))  # reals that may score at or above the threshold
    # Just above the (allowed + 1)-th highest real score: at most `allowed` reals reach it.
    return float(np.nextafter(reals[-allowed - 1], np.inf))


def balanced_threshold(p_fake: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising balanced accuracy; the midpoint of the best gap between sorted scores."""
    scores = np.unique(p_fake)
    if len(np.unique(labels)) < 2 or scores.size < 2:
        return 0.5
    candidates = np.concatenate([[0.0], (scores[:-1] + scores[1:]) / 2, [1.0]])
    reals, fakes = p_fake[labels == REAL], p_fake[labels != REAL]
    balanced = [(np.mean(reals < t) + np.mean(fakes >= t)) / 2 for t in candidates]
    best = np.flatnonzero(np.isclose(balanced, max(balanced)))
    # Several equally good thresholds: the middle one of the middle run, away from both classes.
    return float(candidates[best[len(best) // 2]])


def uncertain_band(
    p_fake: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    target_accuracy: float = BAND_TARGET_ACCURACY,
    max_fraction: float = BAND_MAX_FRACTION,
) -> tuple[float, float] | None:
    """``(low, high)``: the narrowest symmetric band around ``threshold`` outside which validation decisions
    reach ``target_accuracy``, holding at most ``max_fraction`` of the images; None if no band is needed."""
    distance = np.abs(p_fake - threshold)
    order = np.argsort(distance, kind="stable")
    correct = ((p_fake >= threshold).astype(int) == labels)[order]
    limit = min(int(np.floor(max_fraction * len(labels))), len(labels) - 1)
    # correct_from[k]: decisions still right when the k images nearest the threshold are called uncertain.
    correct_from = np.cumsum(correct[::-1])[::-1]
    chosen = limit
    for k in range(limit + 1):
        if correct_from[k] / (len(labels) - k) >= target_accuracy:
            chosen = k
            break
    width = float(distance[order[chosen - 1]]) if chosen > 0 else 0.0
    if width <= 0:
        return None
    return max(0.0, threshold - width), min(1.0, threshold + width)


# A real collection with fewer validation reals than this cannot pin a rate of a few percent (at 5%, under
# 50 reals allow at most one mistake, so a single outlier would set the threshold): it is judged together
# with the other small collections of its source.
MIN_COLLECTION_REALS = 50


def pooled_collections(collections: list[str], labels: np.ndarray) -> list[str]:
    """Each image's collection, small real collections (< MIN_COLLECTION_REALS reals) joined per source."""
    counts: dict[str, int] = {}
    for name, label in zip(collections, labels, strict=True):
        if label == REAL:
            counts[name] = counts.get(name, 0) + 1
    joined = []
    for name in collections:
        small = counts.get(name, 0) < MIN_COLLECTION_REALS and "/" in name
        joined.append(f"{name.split('/', 1)[0]}/other" if small else name)
    return joined


def threshold_per_collection(
    p_fake: np.ndarray, labels: np.ndarray, collections: list[str], target_fpr: float
) -> tuple[float, dict[str, dict[str, float]]]:
    """The strictest of the thresholds that hold each real collection's false-positive rate at ``target_fpr``,
    and per collection its number of reals and its false-positive rate at that threshold."""
    names = np.array(pooled_collections(collections, labels))
    thresholds = {}
    for name in sorted({str(n) for n in names[labels == REAL]}):
        chosen = names == name
        thresholds[name] = threshold_for_fpr(p_fake[chosen], labels[chosen], target_fpr)
    if not thresholds:
        raise DataError("choosing a threshold for a false-positive rate needs real images in the validation split")
    threshold = max(thresholds.values())
    rates = {
        name: {
            "n_real": int(np.sum((names == name) & (labels == REAL))),
            "fpr": float(np.mean(p_fake[(names == name) & (labels == REAL)] >= threshold)),
            "own_threshold": value,
        }
        for name, value in thresholds.items()
    }
    return threshold, rates


@dataclass
class Calibration:
    temperature: float
    threshold: float
    band: tuple[float, float] | None
    report: dict[str, Any] = field(default_factory=dict)


def calibrate(
    logits: np.ndarray, labels: np.ndarray, target_fpr: float | None = None, collections: list[str] | None = None
) -> Calibration:
    """Temperature, threshold and uncertain band fitted on validation ``logits`` and ``labels``.

    With ``collections`` (each image's real collection, see :func:`facecheck.data.sources.collection_of`) and a
    ``target_fpr``, the threshold holds every collection's false-positive rate at the target, not the pooled one.
    """
    temperature = fit_temperature(logits, labels)
    p_fake = p_fake_of(logits, temperature)
    per_collection = None
    if target_fpr is None:
        threshold = balanced_threshold(p_fake, labels)
    elif collections is not None:
        threshold, per_collection = threshold_per_collection(p_fake, labels, collections, target_fpr)
    else:
        threshold = threshold_for_fpr(p_fake, labels, target_fpr)
    band = uncertain_band(p_fake, labels, threshold)
    report: dict[str, Any] = {
        "temperature": temperature,
        "threshold": threshold,
        "uncertain_band": list(band) if band else None,
        "val_images": len(labels),
        "val_log_loss_before": mean_cross_entropy(logits, labels),
        "val_log_loss_after": mean_cross_entropy(logits, labels, temperature),
    }
    warnings = []
    if any(np.isclose(temperature, bound, rtol=1e-3) for bound in TEMPERATURE_BOUNDS):
        warnings.append(
            f"the temperature ({temperature:.3f}) hit its search bound: the {len(labels)} validation images do not "
            "pin it down (too few, or perfectly separated), so probabilities are not calibrated"
        )
    if len(labels) < 50:
        warnings.append(f"only {len(labels)} validation images: threshold and band are rough")
    report["warnings"] = warnings
    if target_fpr is not None:
        report["target_fpr"] = target_fpr
        report["val_fpr_at_threshold"] = float(np.mean(p_fake[labels == REAL] >= threshold))
        report["val_tpr_at_threshold"] = float(np.mean(p_fake[labels != REAL] >= threshold))
    if per_collection is not None:
        report["val_fpr_per_collection"] = per_collection
    return Calibration(temperature, threshold, band, report)
