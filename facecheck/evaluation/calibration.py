"""Calibration: temperature scaling of the logits and a decision threshold, fitted on validation data.

Temperature scaling (Guo et al., 2017) divides the logits by one number T
chosen to minimise the validation log loss: probabilities become honest
without changing the ranking (ROC AUC is unchanged). The threshold is 0.5 on
calibrated probabilities, or the smallest one whose false-positive rate on
validation reals is at most a target.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from facecheck.data.discovery import REAL
from facecheck.errors import DataError
from facecheck.evaluation.scoring import mean_cross_entropy, p_fake_of


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the mean cross-entropy of ``logits / T``."""
    result = minimize_scalar(
        lambda log_t: mean_cross_entropy(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
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


def calibrate(
    logits: np.ndarray, labels: np.ndarray, target_fpr: float | None = None
) -> tuple[float, float, dict[str, float]]:
    """``(temperature, threshold, report)`` fitted on validation ``logits`` and ``labels``."""
    temperature = fit_temperature(logits, labels)
    p_fake = p_fake_of(logits, temperature)
    threshold = 0.5 if target_fpr is None else threshold_for_fpr(p_fake, labels, target_fpr)
    report = {
        "temperature": temperature,
        "threshold": threshold,
        "val_log_loss_before": mean_cross_entropy(logits, labels),
        "val_log_loss_after": mean_cross_entropy(logits, labels, temperature),
    }
    if target_fpr is not None:
        report["target_fpr"] = target_fpr
        report["val_fpr_at_threshold"] = float(np.mean(p_fake[labels == REAL] >= threshold))
    return temperature, threshold, report
