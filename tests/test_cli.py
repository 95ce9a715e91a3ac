"""End-to-end through the command line: train, evaluate, predict, and every bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from facecheck.checkpoint import read_checkpoint
from facecheck.cli import main

from .conftest import write_face_set

QUICK = ["--preset", "seed-cnn", "--epochs", "1", "--batch-size", "8", "--set", "preprocess.image_size=64", "--quiet"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("preset", ["seed-cnn", "seed-mobilenet"])
def test_train_evaluate_predict_round_trip(tmp_path: Path, capsys, preset: str):
    data = write_face_set(tmp_path / "faces", per_class=12)
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "--data", str(data), "--out", str(run_dir), *QUICK, "--preset", preset)
    assert code == 0, err
    assert json.loads(out)["test"]["n"] == 8
    for name in ("best.pt", "last.pt", "config.yaml", "split.csv", "metrics.jsonl", "summary.json", "train.log"):
        assert (run_dir / name).is_file(), name
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["preset"] == preset and saved["preprocess"]["image_size"] == 64
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert {"epoch", "train_loss", "val_loss", "val_accuracy", "val_roc_auc"} <= set(row)
    log = (run_dir / "train.log").read_text()
    assert "found 24 images" in log and "real 12, fake 12" in log

    code, out, err = run(capsys, "evaluate", "--model", str(run_dir), "--data", str(data), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    required = {"accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "confusion_matrix", "n"}
    required |= {"average_precision", "eer", "eer_threshold", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss"}
    required |= {"brier", "ece", "accuracy_ci95", "roc_auc_ci95"}
    assert required <= set(metrics)
    assert metrics["n"] == 8  # the training folder: only its test split is scored
    assert "test split" in metrics["data"]

    code, out, _ = run(capsys, "evaluate", "--model", str(run_dir), "--data", str(data), "--split", "all", "--json")
    assert code == 0 and json.loads(out)["n"] == 24

    code, out, _ = run(capsys, "evaluate", "--model", str(run_dir), "--json", "--perturb", "jpeg:50", "blur:1")
    assert code == 0
    perturbed = json.loads(out)["perturbations"]
    assert set(perturbed) == {"jpeg:50", "blur:1"} and perturbed["jpeg:50"]["n"] == 8

    images = sorted((data / "fake").glob("*.png"))[:2]
    (tmp_path / "bad.jpg").write_text("not an image")
    code, out, err = run(
        capsys,
        "predict",
        "--model",
        str(run_dir / "best.pt"),
        *map(str, images),
        str(tmp_path / "bad.jpg"),
        "--format",
        "json",
    )
    assert code == 0
    rows = json.loads(out)
    assert [r["path"] for r in rows] == [*map(str, images), str(tmp_path / "bad.jpg")]
    card = read_checkpoint(run_dir / "best.pt")["card"]
    for row in rows[:2]:
        assert 0.0 <= row["p_fake"] <= 1.0 and row["label"] == card.decide(row["p_fake"])
        if row["label"] != "uncertain":  # the threshold chosen on validation decides
            assert row["label"] == ("fake" if row["p_fake"] >= card.threshold else "real")
    assert "not a readable image" in rows[2]["error"]
    assert "1 of 3 file(s) could not be read" in err

    code, out, _ = run(capsys, "predict", "--model", str(run_dir), str(data / "real"), "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == "path,p_fake,label,faces,face_box,error,provenance" and len(out.splitlines()) == 13


def test_default_data_is_the_synthetic_set(tmp_path: Path, capsys):
    code, out, err = run(capsys, "train", "--out", str(tmp_path / "r"), *QUICK)
    assert code == 0, err
    assert "SYNTHETIC" in (tmp_path / "r" / "train.log").read_text()
    code, out, _ = run(capsys, "evaluate", "--model", str(tmp_path / "r"))
    assert code == 0 and "accuracy" in out and "test split" in out


def test_config_file_and_overrides_reach_the_run(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "faces", per_class=10)
    (tmp_path / "c.yaml").write_text("optim:\n  lr: 0.0005\nmodel:\n  hidden_dim: 16\n")
    code, _, err = run(
        capsys,
        "train",
        "--data",
        str(data),
        "--config",
        str(tmp_path / "c.yaml"),
        "--set",
        "optim.weight_decay=0",
        "--out",
        str(tmp_path / "r"),
        *QUICK,
    )
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["optim"] == {"lr": 0.0005, "weight_decay": 0, "step_size": 5, "gamma": 0.5}
    assert saved["model"]["hidden_dim"] == 16


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp / "empty"
    empty.mkdir()
    one = tmp / "one"
    (one / "real").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(one / "real" / "a.png")
    (tmp / "corrupt.pt").write_bytes(b"PK\x03\x04garbage")
    return {
        "missing data": (["train", "--data", str(tmp / "nope")], "data folder not found"),
        "empty data": (["train", "--data", str(empty)], "no class folders"),
        "one class": (["train", "--data", str(one)], "only one class"),
        "missing model": (["evaluate", "--model", str(tmp / "nope.pt"), "--data", str(one)], "model not found"),
        "corrupt model": (["predict", "--model", str(tmp / "corrupt.pt"), str(one)], "not a readable facecheck"),
        "bad override": (["train", "--set", "optim.lrr=1"], "unknown setting"),
        "resume nothing": (["train", "--out", str(empty), "--resume"], "nothing to resume"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing data", "empty data", "one class", "missing model", "corrupt model", "bad override", "resume nothing"],
)
def test_bad_input_gives_one_clear_line(tmp_path: Path, capsys, case: str):
    argv, message = _bad_inputs(tmp_path)[case]
    never = tmp_path / "never"
    extra = ["--quiet", "--out", str(never)] if argv[0] == "train" and "--out" not in argv else []
    code, _out, err = run(capsys, *argv, *extra)
    assert not never.exists()  # a run that fails on its input leaves no folder behind
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0


def test_existing_run_is_not_overwritten(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "faces", per_class=10)
    assert run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "r"), *QUICK)[0] == 0
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "r"), *QUICK)
    assert code == 2 and "already holds a run" in err


def test_unreadable_training_images_are_skipped_and_listed(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "faces", per_class=8)
    (data / "fake" / "text.jpg").write_text("hello")
    good = (data / "real" / "000.png").read_bytes()
    (data / "real" / "cut.png").write_bytes(good[: len(good) // 3])
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "r"), *QUICK)
    assert code == 0, err
    skipped = (tmp_path / "r" / "skipped.csv").read_text()
    assert "text.jpg" in skipped and "cut.png" in skipped


def test_real_entry_point_exit_codes(tmp_path: Path):
    ok = subprocess.run([sys.executable, "-m", "facecheck", "models", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0
    assert {m["name"] for m in json.loads(ok.stdout)["models"]} == {"seed_cnn", "mobilenet_v2", "efficientnet_lite0"}
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(image)
    bad = subprocess.run(
        [sys.executable, "-m", "facecheck", "predict", "--model", str(tmp_path / "x"), str(image)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("facecheck: error: model not found") and "Traceback" not in bad.stderr
    # Inputs are checked first: a missing image fails before the model is loaded.
    missing = subprocess.run(
        [sys.executable, "-m", "facecheck", "predict", "--model", str(tmp_path / "x"), str(tmp_path / "b.jpg")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("facecheck: error: file not found")


def test_data_synthetic_prints_its_folder(tmp_path: Path, capsys):
    code, out, _ = run(capsys, "data", "synthetic", "--out", str(tmp_path / "s"), "--per-class", "3")
    assert code == 0 and out.strip() == str(tmp_path / "s")
    assert len(list((tmp_path / "s" / "fake").glob("*.png"))) == 3
