"""Everyday options: --threshold, predict --out, train --keep, the cache command, progress on stderr."""

import csv
import json
import os
from pathlib import Path

import pytest

from facecheck.cli import main
from facecheck.paths import CACHE_KINDS, cache_dir, cache_folder

from .conftest import write_face_set

QUICK = ["--preset", "seed-cnn", "--epochs", "1", "--batch-size", "8", "--set", "preprocess.image_size=64", "--quiet"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_threshold_override_decides_labels_and_metrics(capsys, trained_run):
    run_dir, data = trained_run
    code, out, _ = run(capsys, "predict", "--model", str(run_dir), str(data), "--threshold", "0", "--format", "json")
    assert code == 0 and {row["label"] for row in json.loads(out)} == {"fake"}
    code, out, _ = run(capsys, "predict", "--model", str(run_dir), str(data), "--threshold", "1", "--format", "json")
    assert code == 0 and {row["label"] for row in json.loads(out) if row["p_fake"] < 1} == {"real"}

    code, out, err = run(capsys, "evaluate", "--model", str(run_dir), "--threshold", "0", "--json")
    result = json.loads(out)
    assert code == 0 and result["threshold"] == 0
    assert [row[0] for row in result["confusion_matrix"]] == [0, 0]  # nothing predicted real
    assert "calls every evaluated image fake" in err and any("calls every" in w for w in result["warnings"])


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "half"])
def test_threshold_outside_zero_one_is_refused(capsys, value: str):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "x.jpg", "--threshold", value])
    assert exited.value.code == 2 and "--threshold" in capsys.readouterr().err


def test_predict_out_writes_csv_or_json_atomically(tmp_path: Path, capsys, trained_run):
    run_dir, data = trained_run
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    inputs = [str(data / "real"), str(tmp_path / "bad.png")]
    code, out, err = run(capsys, "predict", "--model", str(run_dir), *inputs, "--out", str(tmp_path / "r" / "a.csv"))
    assert code == 0 and out == "" and "11 result(s) written" in err
    with open(tmp_path / "r" / "a.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 11 and rows[-1]["error"] and all(0 <= float(r["p_fake"]) <= 1 for r in rows[:-1])
    code, _, _ = run(capsys, "predict", "--model", str(run_dir), *inputs, "--out", str(tmp_path / "r" / "a.json"))
    written = json.loads((tmp_path / "r" / "a.json").read_text())
    assert code == 0 and [r["path"] for r in written] == [r["path"] for r in rows]
    assert sorted(os.listdir(tmp_path / "r")) == ["a.csv", "a.json"]  # no temporary files left

    code, _, err = run(capsys, "predict", "--model", str(run_dir), inputs[0], "--out", str(tmp_path / "a.txt"))
    assert code == 2 and ".csv or .json" in err and not (tmp_path / "a.txt").exists()


def test_a_missing_input_stops_predict_before_any_work(tmp_path: Path, capsys, trained_run):
    code, out, err = run(capsys, "predict", "--model", str(trained_run[0]), str(tmp_path / "typo.jpg"))
    assert code == 2 and out == "" and err.strip() == f"facecheck: error: file not found: {tmp_path / 'typo.jpg'}"


def test_predict_progress_goes_to_stderr_and_json_stays_clean(capsys, trained_run):
    run_dir, data = trained_run
    code, out, err = run(capsys, "predict", "--model", str(run_dir), str(data), "--format", "json")
    assert code == 0 and len(json.loads(out)) == 20
    assert "predicting" in err  # 20 images: more than a few, so a bar even without a terminal


def test_every_perturbation_pass_shows_progress(capsys, trained_run):
    run_dir, data = trained_run
    argv = ["evaluate", "--model", str(run_dir), "--data", str(data), "--split", "all", "--json"]
    code, out, err = run(capsys, *argv, "--perturb", "jpeg:50", "blur:1")
    assert code == 0 and set(json.loads(out)["perturbations"]) == {"jpeg:50", "blur:1"}
    assert "scoring jpeg:50 (perturbation 1/2)" in err and "scoring blur:1 (perturbation 2/2)" in err


def test_keep_best_drops_last_pt_and_refuses_resume(tmp_path: Path, capsys):
    data = write_face_set(tmp_path / "faces", per_class=8)
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(run_dir), *QUICK, "--keep", "best")
    assert code == 0, err
    assert (run_dir / "best.pt").is_file() and not (run_dir / "last.pt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["kept"] == ["best.pt"]
    assert run(capsys, "evaluate", "--model", str(run_dir), "--json")[0] == 0
    code, _, err = run(capsys, "train", "--out", str(run_dir), "--resume", "--epochs", "2", "--quiet")
    assert code == 2 and "cannot be resumed or extended" in err
    assert not (run_dir / "last.pt").exists()


def test_cache_info_and_clean_remove_only_what_facecheck_made(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(tmp_path / "cache"))
    root = cache_dir()
    for kind in ("decoded", "onnx"):
        (cache_folder(kind) / "sub").mkdir(parents=True, exist_ok=True)
        (root / kind / "sub" / "x.bin").write_bytes(b"0" * 1000)
    (root / "mine.txt").write_text("not facecheck's")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.bin").write_bytes(b"1")
    (root / "faces").symlink_to(outside, target_is_directory=True)

    code, out, _ = run(capsys, "cache", "info", "--json")
    parts = {p["kind"]: p for p in json.loads(out)["parts"]}
    assert code == 0 and set(parts) == set(CACHE_KINDS) and parts["decoded"]["bytes"] >= 1000

    code, out, _ = run(capsys, "cache", "clean", "--only", "decoded")
    assert code == 0 and not (root / "decoded").exists() and (root / "onnx" / "sub" / "x.bin").is_file()
    code, out, _ = run(capsys, "cache", "clean")
    assert code == 0 and "freed" in out
    assert not any((root / kind).exists() for kind in ("decoded", "onnx"))
    assert (root / "faces").is_symlink() and "kept" in out  # a link is neither followed nor removed
    assert (root / "mine.txt").is_file() and (outside / "keep.bin").is_file()
    with pytest.raises(SystemExit):
        main(["cache", "clean", "--only", "everything"])
