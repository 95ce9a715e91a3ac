"""Several sources in one run, balanced batches, pseudo-fakes in training, leave-one-source-out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facecheck.api import evaluate
from facecheck.cli import main
from facecheck.config import get_preset, merge
from facecheck.data.discovery import FAKE, REAL
from facecheck.data.sources import open_sources, sources_of, split_by_source
from facecheck.errors import ConfigError, DataError
from facecheck.experiments import leave_one_out
from facecheck.training.datasets import PseudoFakeDataset, RunDatasets
from facecheck.training.trainer import train
from tests.conftest import quick_config, write_face_set


def three_sources(root: Path, per_class: int = 8) -> list[Path]:
    return [write_face_set(root / name, per_class=per_class, size=32, seed=i) for i, name in enumerate("abc")]


def test_sources_keep_their_names_and_split_inside_each(tmp_path: Path):
    a, b, _ = three_sources(tmp_path)
    dataset = open_sources([a, b])
    sources = sources_of(dataset.records, dataset.metadata)
    assert sorted(set(sources)) == ["a", "b"] and sources.count("a") == 16
    split = split_by_source(dataset.records, sources, None, 0.3, 0.0, seed=0)
    for part in ("train", "test"):
        per_source = {s: sum(1 for r in split[part] if r.path.parent.parent.name == s) for s in "ab"}
        assert per_source["a"] == per_source["b"] > 0  # same proportions in every source


def test_sources_need_distinct_names(tmp_path: Path):
    first = write_face_set(tmp_path / "x" / "faces", per_class=2)
    second = write_face_set(tmp_path / "y" / "faces", per_class=2)
    with pytest.raises(DataError, match="distinct folder names"):
        open_sources([first, second])


def test_multi_source_run_evaluates_by_source(tmp_path: Path, capsys):
    a, b, _ = three_sources(tmp_path)
    code = main(["train", "--preset", "seed-cnn", "--data", str(a), "--data", str(b), "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--set", "preprocess.image_size=32", "--balance", "source-class",
                 "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = evaluate(tmp_path / "r")
    by_source = evaluate(tmp_path / "r", tmp_path / "a")
    assert result["n"] == 10 and by_source["n"] == 5  # the run's test split; only source a's part of it
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "r"), "--by", "source", "--json"]) == 0
    breakdown = json.loads(capsys.readouterr().out)["breakdown"]["source"]
    assert set(breakdown) == {"a", "b"} and breakdown["a"]["n"] == 5


def test_balanced_weights_make_every_source_and_class_weigh_the_same(tmp_path: Path):
    a = write_face_set(tmp_path / "a", per_class=6, size=32)
    b = write_face_set(tmp_path / "b", per_class=2, size=32)
    dataset = open_sources([a, b])
    split = {"train": dataset.records, "val": [], "test": []}
    config = quick_config("seed-cnn", None, data={"balance": "source-class", "data_dir": [str(a), str(b)]},
                          preprocess={"image_size": 32})  # fmt: skip
    datasets = RunDatasets(config, split, "test", False, [str(a), str(b)])
    weights = datasets.sampler_weights()
    assert weights is not None
    totals: dict[tuple[str, int], float] = {}
    for record, weight in zip(datasets.train_records, weights.tolist(), strict=True):
        key = (record.path.parent.parent.name, record.label)
        totals[key] = totals.get(key, 0.0) + weight
    assert all(v == pytest.approx(1.0) for v in totals.values()) and len(totals) == 4


def test_pseudo_fake_dataset_is_deterministic_and_labelled_fake():
    reals = np.random.default_rng(0).integers(0, 255, (3, 48, 48, 3), dtype=np.uint8)
    dataset = PseudoFakeDataset(reals, 6, ["sbi", "resynth"], seed=1, jpeg_quality=75, transform=lambda x: x)
    first = [dataset[i] for i in range(6)]
    assert all(label == FAKE for _, label in first) and len(dataset) == 6
    again = PseudoFakeDataset(reals, 6, ["sbi", "resynth"], seed=1, jpeg_quality=75, transform=lambda x: x)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(first, [again[i] for i in range(6)], strict=True))
    dataset.epoch = 2  # a new epoch draws new pseudo-fakes
    assert not all(torch.equal(dataset[i][0], first[i][0]) for i in range(6))


def test_reals_only_training_learns_from_pseudo_fakes(tmp_path: Path):
    data = write_face_set(tmp_path / "d", per_class=8, size=32)
    config = quick_config("seed-cnn", data, preprocess={"image_size": 32},
                          data={"pseudo_fakes": ["sbi"], "use_fakes": False})  # fmt: skip
    result = train(config, tmp_path / "r", quiet=True)
    datasets = RunDatasets(config, {"train": [], "val": [], "test": []}, "test", False)
    assert datasets.train_records == []
    assert result.test_metrics["n"] > 0 and np.isfinite(result.history[0]["train_loss"])
    with pytest.raises(ConfigError, match="use_fakes=false needs"):
        train(merge(config, {"data": {"pseudo_fakes": []}}), tmp_path / "r2", quiet=True)


@pytest.mark.slow
def test_leave_one_out_trains_on_the_others_and_tests_on_the_one_left_out(tmp_path: Path, capsys):
    sources = three_sources(tmp_path / "data", per_class=10)
    args = ["crosseval", "--leave-one-out", "--preset", "seed-cnn", "--epochs", "1", "--out", str(tmp_path / "loo"),
            "--set", "preprocess.image_size=32", "--set", "data.val_fraction=0.25", "--quiet"]  # fmt: skip
    for source in sources:
        args += ["--data", str(source)]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "loo" / "leave-one-out.json").read_text())
    assert set(summary["folds"]) == {"a", "b", "c"}
    fold = summary["folds"]["a"]
    assert fold["trained_on"] == ["b", "c"] and fold["held_out"]["n"] == 20  # every image of a
    assert set(fold["in_domain"]) == {"b", "c"} and "roc_auc_jpeg50" in fold["in_domain"]["b"]
    assert (tmp_path / "loo" / "leave-one-out.png").stat().st_size > 0
    assert "| a |" in (tmp_path / "loo" / "leave-one-out.md").read_text()
    assert REAL == 0  # the table's ROC AUC has fake as the positive class


@pytest.mark.slow
def test_leave_one_out_held_out_runs_only_that_fold(tmp_path: Path, capsys):
    sources = three_sources(tmp_path / "data", per_class=8)
    args = ["crosseval", "--leave-one-out", "--held-out", "b", "--preset", "seed-cnn", "--epochs", "1",
            "--out", str(tmp_path / "loo"), "--set", "preprocess.image_size=32", "--set", "data.val_fraction=0.25",
            "--quiet"]  # fmt: skip
    for source in sources:
        args += ["--data", str(source)]
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "loo" / "leave-one-out.json").read_text())
    assert set(summary["folds"]) == {"b"} and summary["folds"]["b"]["trained_on"] == ["a", "c"]
    assert summary["mean_held_out_roc_auc"] is None  # one fold's AUC is not the protocol's mean
    assert sorted(p.name for p in (tmp_path / "loo").glob("without-*")) == ["without-b"]


@pytest.mark.slow
def test_leave_one_out_keeps_fold_scores_and_reports_folds_from_earlier_calls(tmp_path: Path, monkeypatch):
    import facecheck.experiments as experiments

    sources = [str(s) for s in three_sources(tmp_path / "data", per_class=8)]
    config = quick_config("seed-cnn", None, preprocess={"image_size": 32}, data={"val_fraction": 0.25})
    out = tmp_path / "loo"
    first = leave_one_out(config, sources, out, quiet=True, held_out=["b"])
    second = leave_one_out(config, sources, out, quiet=True, held_out=["c"])
    assert set(second["folds"]) == {"b", "c"} and second["folds"]["b"] == first["folds"]["b"]
    table = (out / "leave-one-out.md").read_text()
    assert "| b |" in table and "| c |" in table and "| a |" not in table  # a was never run
    scored: list[str] = []
    real_evaluate = experiments.evaluate

    def counting_evaluate(detector, data, **kwargs):
        scored.append(Path(data).name)
        return real_evaluate(detector, data, **kwargs)

    monkeypatch.setattr(experiments, "evaluate", counting_evaluate)
    again = leave_one_out(config, sources, out, quiet=True, held_out=["b", "c"])
    assert scored == [] and again["folds"] == second["folds"]  # stored scores, nothing scored again
    leave_one_out(config, sources, out, quiet=True, held_out=["b"], rescore=True)
    assert scored == ["b", "a", "c"]  # forced: the held-out source, then each training source
    scored.clear()
    leave_one_out(config, sources, out, quiet=True, held_out=["c"], jpeg_quality=30)
    assert scored == ["c", "a", "b"]  # other evaluation settings: the stored scores do not apply
    for damaged in ("{not json", "[1, 2]"):
        (out / "without-b" / experiments.FOLD_SCORES).write_text(damaged)
        scored.clear()
        leave_one_out(config, sources, out, quiet=True, held_out=["b"])
        assert scored == ["b", "a", "c"]  # an unreadable store is scored again, not trusted


def test_leave_one_out_rejects_an_unknown_held_out_source(tmp_path: Path, capsys):
    sources = three_sources(tmp_path / "data", per_class=2)
    with pytest.raises(DataError, match="--held-out x is not one of the sources: a, b, c"):
        leave_one_out(get_preset("seed-cnn"), [str(s) for s in sources], tmp_path / "loo", held_out=["x"])
    args = ["crosseval", "--held-out", "a", "--out", str(tmp_path / "cx")] + [f"--data={s}" for s in sources]
    assert main(args) != 0
    assert "--held-out needs --leave-one-out" in capsys.readouterr().err
    missing = [str(sources[0]), str(sources[1]), str(tmp_path / "nowhere")]
    with pytest.raises(DataError, match="data folder not found"):  # before the first fold trains
        leave_one_out(get_preset("seed-cnn"), missing, tmp_path / "loo-missing")
    assert not (tmp_path / "loo-missing").exists()
    assert main(["crosseval", "--rescore", "--out", str(tmp_path / "cx")] + [f"--data={s}" for s in sources]) != 0
    assert "--rescore needs --leave-one-out" in capsys.readouterr().err
    assert not (tmp_path / "loo").exists()
