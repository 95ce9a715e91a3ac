"""Cross-set evaluation, cross-validation and tuning on tiny generated sets."""

import json
from pathlib import Path

import yaml

from facecheck.cli import main
from facecheck.config import TrainConfig

from .conftest import write_face_set

TINY = ["--preset", "seed-cnn", "--epochs", "1", "--set", "preprocess.image_size=32", "--quiet"]


def test_crosseval_writes_the_matrix(tmp_path: Path, capsys):
    first = write_face_set(tmp_path / "alpha", per_class=10)
    second = write_face_set(tmp_path / "beta", per_class=10, seed=4)
    code = main(["crosseval", "--data", str(first), "--data", str(second), "--out", str(tmp_path / "x"), *TINY])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "x" / "crosseval.json").read_text())
    assert set(summary["matrix"]) == {"alpha", "beta"}
    assert summary["matrix"]["alpha"]["alpha"]["n"] == 6  # held-out test split
    assert summary["matrix"]["alpha"]["beta"]["n"] == 20  # the whole other set
    assert (tmp_path / "x" / "crosseval.png").is_file()
    assert "trained on" in capsys.readouterr().out


def test_cross_validation_reports_mean_and_std(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "d", per_class=12)
    assert main(["cv", "--data", str(data), "--folds", "3", "--out", str(tmp_path / "cv"), *TINY]) == 0
    summary = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [row["fold"] for row in summary["per_fold"]] == [0, 1, 2]
    assert {"mean", "std"} <= set(summary["summary"]["accuracy"])
    tested = set()
    for fold in range(3):
        split = (tmp_path / "cv" / f"fold-{fold}" / "split.csv").read_text().splitlines()[1:]
        tested |= {line.split(",")[0] for line in split if line.endswith(",test")}
    assert len(tested) == 24  # every image is tested exactly once across the folds


def test_tuning_resumes_from_its_storage_and_writes_a_usable_config(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "d", per_class=10)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["tune", "--data", str(data), "--storage", storage, "--out", str(tmp_path / "t"), *TINY]
    assert main([*common, "--trials", "2"]) == 0, capsys.readouterr().err
    assert main([*common, "--trials", "3"]) == 0
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert summary["trials"] == 3  # the second call added one trial to the stored two
    config = TrainConfig.from_dict(yaml.safe_load((tmp_path / "t" / "best_config.yaml").read_text()))
    assert config.optim.lr == summary["best_params"]["lr"]
    assert (tmp_path / "t" / "tune-history.png").is_file()
    capsys.readouterr()
    assert main(["tune", "--data", str(data), "--storage", "nosuchdb://x", "--out", str(tmp_path / "u"), *TINY]) == 2
    assert "cannot open the study storage" in capsys.readouterr().err
