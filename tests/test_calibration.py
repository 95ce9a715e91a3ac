"""Calibration: temperature scaling and thresholds, fitted on validation data, used by predict."""

import json
from pathlib import Path

import numpy as np
import pytest

from facecheck.checkpoint import build_model, card_for, read_checkpoint, save_checkpoint
from facecheck.cli import main
from facecheck.errors import ConfigError, DataError
from facecheck.evaluation.calibration import calibrate, fit_temperature, threshold_for_fpr
from facecheck.inference.outputs import p_fake_of
from facecheck.inference.predictor import Detector

from .conftest import quick_config, write_face_set


def test_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, (4000, 1)) * np.array([[-0.5, 0.5]])
    labels = (rng.random(4000) < p_fake_of(true_logits)).astype(int)
    overconfident = true_logits * 3.0  # a model whose logits are three times too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.1)
    result = calibrate(overconfident, labels)
    assert result.temperature == pytest.approx(3.0, rel=0.1)
    assert result.report["val_log_loss_after"] < result.report["val_log_loss_before"]
    # calibrated and balanced: the best balanced-accuracy threshold lies near 0.5, the band around it
    assert 0.4 < result.threshold < 0.6
    assert result.band is not None and result.band[0] < result.threshold < result.band[1]


def test_threshold_for_a_false_positive_rate_by_hand():
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p_fake = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
    # 10 reals: 10% FPR allows one real at or above the threshold -> just above 0.8
    threshold = threshold_for_fpr(p_fake, labels, 0.10)
    assert 0.8 < threshold <= 0.9 and np.mean(p_fake[labels == 0] >= threshold) == pytest.approx(0.1)
    # 0% FPR: above every real
    assert threshold_for_fpr(p_fake, labels, 0.0) > 0.9
    with pytest.raises(DataError):
        threshold_for_fpr(p_fake, labels, 1.5)


def test_detector_applies_temperature_and_threshold(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "plain.pt", model, card_for(config, epoch=1, metrics={}))
    save_checkpoint(tmp_path / "hot.pt", model, card_for(config, epoch=1, metrics={}, temperature=4.0, threshold=0.3))
    images = sorted(write_face_set(tmp_path / "d", per_class=2).rglob("*.png"))
    plain = Detector.load(tmp_path / "plain.pt")
    hot = Detector.load(tmp_path / "hot.pt")
    for a, b in zip(plain.predict(images), hot.predict(images), strict=True):
        logit_gap = np.log(a.p_fake / (1 - a.p_fake))
        assert np.log(b.p_fake / (1 - b.p_fake)) == pytest.approx(logit_gap / 4.0, rel=1e-3, abs=1e-4)
        assert b.label == ("fake" if b.p_fake >= 0.3 else "real")


def test_training_fits_and_stores_calibration(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "d", per_class=20)
    code = main(["train", "--preset", "seed-cnn", "--data", str(data),
                 "--out", str(tmp_path / "r"), "--epochs", "1", "--target-fpr", "0.1",
                 "--set", "preprocess.image_size=32", "--set", "data.val_fraction=0.3", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    card = read_checkpoint(tmp_path / "r" / "best.pt")["card"]
    report = card.notes["calibration"]
    assert card.temperature == pytest.approx(report["temperature"])
    assert card.threshold == pytest.approx(report["threshold"])
    assert report["val_fpr_at_threshold"] <= 0.1
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["test"]["threshold"] == pytest.approx(card.threshold)
    # evaluate reproduces the summary's test numbers with the stored calibration
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "r"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert evaluated["roc_auc"] == pytest.approx(summary["test"]["roc_auc"], abs=1e-6)


def test_target_fpr_needs_validation(tmp_path: Path):
    from facecheck.config import validate

    with pytest.raises(ConfigError, match="needs a validation split"):
        validate(quick_config("seed-cnn", tmp_path, target_fpr=0.05, data={"val_fraction": 0.0}))


def test_balanced_threshold_is_the_middle_of_the_best_gap():
    from facecheck.evaluation.calibration import balanced_threshold

    # reals at 0.55-0.60, fakes at 0.70-0.80: every threshold in (0.60, 0.70) separates them; 0.5 would call
    # every image fake (the ROC AUC 1.0, accuracy 0.5 case).
    p_fake = np.array([0.55, 0.58, 0.60, 0.70, 0.75, 0.80])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert balanced_threshold(p_fake, labels) == pytest.approx(0.65)


def test_uncertain_band_holds_the_mistakes_near_the_threshold():
    from facecheck.evaluation.calibration import uncertain_band

    # 10 images; the two nearest the threshold 0.5 are the only mistakes: calling them uncertain leaves
    # 8/8 correct (>= 95%), so the band reaches the second nearest (distance 0.05).
    p_fake = np.array([0.05, 0.1, 0.2, 0.3, 0.47, 0.55, 0.7, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    assert uncertain_band(p_fake, labels, 0.5) == pytest.approx((0.45, 0.55))
    perfect = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    assert uncertain_band(p_fake, perfect, 0.5) is None
