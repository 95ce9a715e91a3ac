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


def test_ranking_metrics_match_hand_computed_values():
    from facecheck.evaluation.metrics import ranking_metrics

    # reals 0.1 0.4 0.35 0.8; fakes 0.9 0.65 0.7 0.2
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p_fake = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.65, 0.7, 0.2])
    m = ranking_metrics(labels, p_fake)
    # AP: ranked 0.9(F) 0.8(R) 0.7(F) 0.65(F) 0.4 0.35 0.2(F) 0.1 -> precision at each fake: 1, 2/3, 3/4, 4/7
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    # At threshold 0.65: FPR = 1/4 (0.8), FNR = 1/4 (0.2 missed) -> EER 0.25
    assert m["eer"] == pytest.approx(0.25)
    assert m["eer_threshold"] == pytest.approx(0.65)
    # FPR 0 allows threshold 0.9 only -> TPR 1/4; FPR <= 5% is the same here
    assert m["tpr_at_fpr_1pct"] == pytest.approx(0.25)
    assert m["tpr_at_fpr_5pct"] == pytest.approx(0.25)
    # Brier: mean squared error of p_fake
    expected_brier = np.mean((p_fake - labels) ** 2)
    assert m["brier"] == pytest.approx(expected_brier)
    expected_log_loss = -np.mean(labels * np.log(p_fake) + (1 - labels) * np.log(1 - p_fake))
    assert m["log_loss"] == pytest.approx(expected_log_loss)


def test_ece_by_hand():
    from facecheck.evaluation.metrics import expected_calibration_error

    # bin [0.1,0.2): p 0.15,0.15 labels 0,1 -> gap |0.5-0.15| = 0.35, weight 2/4
    # bin [0.9,1.0]: p 0.95, 1.0 labels 1,1 -> gap |1 - 0.975| = 0.025, weight 2/4
    labels = np.array([0, 1, 1, 1])
    p_fake = np.array([0.15, 0.15, 0.95, 1.0])
    assert expected_calibration_error(labels, p_fake) == pytest.approx(0.5 * 0.35 + 0.5 * 0.025)


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded():
    from facecheck.evaluation.metrics import bootstrap_intervals

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    p_fake = np.clip(labels * 0.6 + rng.normal(0.2, 0.2, 200), 0, 1)
    first = bootstrap_intervals(labels, p_fake, resamples=300, seed=3)
    assert first == bootstrap_intervals(labels, p_fake, resamples=300, seed=3)
    accuracy = ((p_fake >= 0.5) == labels).mean()
    low, high = first["accuracy_ci95"]
    assert low < accuracy < high and high - low < 0.2


def test_roc_auc_of_many_resamples_at_once_is_sklearns_row_by_row():
    from sklearn.metrics import roc_auc_score

    from facecheck.evaluation.metrics import bootstrap_intervals, roc_auc_of_rows

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (40, 30))
    p_fake = np.round(rng.random((40, 30)), 1)  # rounded: many ties, as resampling with replacement makes
    labels[3] = 1  # one class only: no ROC AUC
    got = roc_auc_of_rows(labels, p_fake)
    assert np.isnan(got[3])
    for row in set(range(40)) - {3}:
        assert got[row] == pytest.approx(roc_auc_score(labels[row], p_fake[row]), abs=1e-12), row
    # By hand: fakes 0.9 and 0.5, reals 0.5 and 0.1 -> pairs (0.9>0.5, 0.9>0.1, 0.5=0.5, 0.5>0.1) = 3.5 / 4.
    assert roc_auc_of_rows(np.array([[1, 1, 0, 0]]), np.array([[0.9, 0.5, 0.5, 0.1]]))[0] == 0.875
    # And the interval holds the whole set's ROC AUC.
    labels, p_fake = labels[0], rng.random(30) * 0.5 + labels[0] * 0.4
    low, high = bootstrap_intervals(labels, p_fake, resamples=500)["roc_auc_ci95"]
    assert low <= roc_auc_score(labels, p_fake) <= high


def test_perturbation_specs_are_parsed_and_applied():
    from PIL import Image

    from facecheck.errors import ConfigError
    from facecheck.evaluation.perturb import parse_perturbations

    perturbations = parse_perturbations(["jpeg:90,50", "blur:1.5", "resize:0.5"])
    assert [p.name for p in perturbations] == ["jpeg:90", "jpeg:50", "blur:1.5", "resize:0.5"]
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    assert perturbations[3].apply(image).size == (20, 15)
    assert perturbations[1].apply(image).mode == "RGB"
    for bad, message in [("jpg:9", "cannot read perturbation"), ("jpeg:x", "as a number"),
                         ("jpeg:101", "from 1 to 100"), ("blur:0", "positive"), ("resize:9", "scale")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_perturbations([bad])
