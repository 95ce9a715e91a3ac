"""The quality benchmark runs end to end on tiny sets and checks the issue's targets against its numbers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from .conftest import write_face_set

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("quality_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_targets_are_checked_against_the_measured_numbers():
    quality = load_benchmark()
    cell = {"roc_auc": 0.995, "roc_auc_jpeg50": 0.990}
    report = {
        "matrix": {
            "lite0-native-jpeg": {
                "ffhq-stylegan": {"ffhq-stylegan": cell, "lfw-faceswap": {"roc_auc": 0.60}},
                "lfw-faceswap": {
                    "lfw-faceswap": {"roc_auc": 0.94, "roc_auc_jpeg50": 0.90},
                    "ffhq-stylegan": {"roc_auc": 0.40},
                },
            },
            "seed-mobilenet": {
                "ffhq-stylegan": {"lfw-faceswap": {"roc_auc": 0.53}},
                "lfw-faceswap": {"ffhq-stylegan": {"roc_auc": 0.38}},
            },
        },
        "training": {"lite0-native-jpeg": {"ffhq-stylegan": {"seconds": 1900, "train_images": 1540}}},
        "latency": {"lite0-native-jpeg": {"torch": {"median_ms": 60.0}, "onnx": {"median_ms": 20.0}}},
    }
    met = {c["target"]: c["met"] for c in quality.check_targets(report)}
    assert met["in-domain ROC AUC on ffhq-stylegan >= 0.99"] is True
    assert met["in-domain ROC AUC on lfw-faceswap >= 0.95"] is False
    assert met["JPEG-50 ROC AUC drop on ffhq-stylegan <= 0.02"] is True
    assert met["JPEG-50 ROC AUC drop on lfw-faceswap <= 0.02"] is False
    assert met["cross-set ffhq-stylegan -> lfw-faceswap: ROC AUC >= seed-mobilenet + 0.05"] is True  # +0.07
    assert met["cross-set lfw-faceswap -> ffhq-stylegan: ROC AUC >= seed-mobilenet + 0.05"] is False  # +0.02
    assert met["trains on ffhq-stylegan (1540 training images) in < 30 min"] is False
    assert met["predicts one image in < 50 ms (median, best backend)"] is True


def test_quick_run_end_to_end(tmp_path: Path, capsys):
    quality = load_benchmark()
    sets = [write_face_set(tmp_path / name, per_class=8, size=64, seed=i) for i, name in enumerate(("set-a", "set-b"))]
    out = tmp_path / "out"
    args = ["--data", str(sets[0]), "--data", str(sets[1]), "--presets", "seed-cnn,lite0-native-jpeg"]
    args += ["--set", "preprocess.image_size=64", "--set", "preprocess.crop_size=56", "--set", "model.pretrained=false"]
    assert quality.main([*args, "--quick", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads((out / "quality.json").read_text())
    assert set(report["matrix"]["lite0-native-jpeg"]) == {"set-a", "set-b"}
    assert "roc_auc_jpeg50" in report["matrix"]["seed-cnn"]["set-a"]["set-a"]
    assert set(report["tta"]["set-a"]) == {"none", "flip", "five-crop", "five-crop-flip"}
    assert "## Cross-set ROC AUC" in (out / "quality.md").read_text()
    # a second run reuses the finished trainings instead of training again
    assert quality.main([*args, "--quick", "--repeats", "2", "--no-tta", "--out", str(out)]) == 0
    assert json.loads((out / "quality.json").read_text())["training"]["seed-cnn"]["set-a"]["reused"] is True
    capsys.readouterr()


def test_absent_data_is_said_clearly(tmp_path: Path, capsys):
    quality = load_benchmark()
    assert quality.main(["--data", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "absent" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["seed-cnn", "seed-cnn=x"])
def test_bad_epoch_override_is_rejected(bad: str):
    with pytest.raises(SystemExit, match="PRESET=N"):
        load_benchmark().parse_epochs([bad])
