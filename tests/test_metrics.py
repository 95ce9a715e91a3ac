import numpy as np
import pytest

from facecheck.evaluation.metrics import classification_metrics


def test_metrics_match_hand_computed_values():
    # 4 real (0), 4 fake (1). Threshold 0.5 calls: real -> [0, 0, 1, 0], fake -> [1, 1, 0, 1]
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p_fake = np.array([0.1, 0.2, 0.7, 0.4, 0.9, 0.8, 0.3, 0.6])
    m = classification_metrics(labels, p_fake)
    # TN=3 FP=1 FN=1 TP=3
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 3 / 4) / 2)
    # AUC = fraction of (fake, real) pairs ranked correctly: fakes 0.9,0.8,0.3,0.6 vs reals 0.1,0.2,0.7,0.4
    # 0.9:4 0.8:4 0.3:2 0.6:3 -> 13/16
    assert m["roc_auc"] == pytest.approx(13 / 16)
    assert m["n"] == 8 and m["n_real"] == 4 and m["n_fake"] == 4


def test_unbalanced_and_threshold():
    labels = np.array([0, 1, 1])
    p_fake = np.array([0.6, 0.65, 0.2])
    m = classification_metrics(labels, p_fake, threshold=0.62)
    # predicted [0, 1, 0]: TN=1 FP=0 FN=1 TP=1
    assert m["confusion_matrix"] == [[1, 0], [1, 1]]
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["roc_auc"] == pytest.approx(0.5)  # pairs (0.65>0.6) yes, (0.2>0.6) no


def test_single_class_has_no_auc():
    m = classification_metrics(np.array([1, 1]), np.array([0.9, 0.1]))
    assert m["roc_auc"] is None
    assert m["accuracy"] == pytest.approx(0.5)


def test_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError):
        classification_metrics(np.array([]), np.array([]))
