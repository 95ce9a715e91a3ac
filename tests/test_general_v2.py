"""The v2 recipe's parts: generators from manifests, degrading augmentation, generator-balanced batches,
a threshold held per real collection, leave-one-generator-out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facecheck.cli import main
from facecheck.config import get_preset, validate
from facecheck.data.discovery import FAKE, REAL
from facecheck.data.sources import collection_of, manifest_metadata, open_sources
from facecheck.data.transforms import RandomDownUp
from facecheck.errors import DataError
from facecheck.evaluation.calibration import calibrate, pooled_collections, threshold_per_collection
from facecheck.evaluation.evaluate import Scores, breakdown
from facecheck.models.registry import with_model_defaults
from facecheck.training.datasets import RunDatasets
from facecheck.training.trainer import train
from tests.conftest import draw_face, quick_config


def manifest_set(root: Path, generators: dict[str, tuple[str, int]], size: int = 32, seed: int = 0) -> Path:
    """A set with a manifest: ``{generator: (label, count)}``, one group per image."""
    rng = np.random.default_rng(seed)
    rows = []
    for generator, (label, count) in generators.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            name = f"{label}/{generator}_{index:03d}.png"
            draw_face(rng, label == "fake", size=size).save(root / name)
            rows.append({"path": name, "label": label, "group": f"{generator}{index}", "generator": generator})
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "group", "generator"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


def test_general_v2_preset_judges_the_face_with_a_threshold_per_collection():
    v2 = with_model_defaults(get_preset("general-v2"))
    pre = v2.preprocess
    assert (pre.face_crop, pre.resize, pre.image_size, pre.augment, pre.tta) == (True, "square", 224, "degrade", "none")
    assert v2.data.balance == "source-class-generator" and v2.target_fpr_scope == "collection"
    assert v2.target_fpr is not None and v2.target_fpr <= 0.05
    validate(v2)


def test_random_down_up_keeps_the_size_and_erases_fine_detail():
    checkerboard = torch.zeros(3, 64, 64, dtype=torch.uint8)
    checkerboard[:, ::2, ::2] = checkerboard[:, 1::2, 1::2] = 255
    torch.manual_seed(0)
    out = RandomDownUp(scale=(0.25, 0.25))(checkerboard)
    assert out.shape == checkerboard.shape and out.dtype == torch.uint8
    # A one-pixel pattern cannot survive a 4x reduction: what is left is close to its mean grey.
    assert float(out.float().std()) < 0.1 * float(checkerboard.float().std())
    assert RandomDownUp(scale=(1.0, 1.0))(checkerboard).equal(checkerboard)


def test_manifest_generators_give_collections(tmp_path: Path):
    manifest = manifest_set(tmp_path / "d", {"cam": ("real", 2), "sd": ("fake", 2)})
    metadata = manifest_metadata([manifest.parent])
    values = {path.name: collection_of(m) for path, m in metadata.items()}
    assert values == {"cam_000.png": "d/cam", "cam_001.png": "d/cam", "sd_000.png": "d/sd", "sd_001.png": "d/sd"}
    assert collection_of({"source": "plain"}) == "plain"


def test_generator_balance_weighs_generators_by_the_square_root_of_their_counts(tmp_path: Path):
    manifest = manifest_set(tmp_path / "d", {"cam": ("real", 5), "big": ("fake", 4), "small": ("fake", 1)})
    data = str(manifest.parent)
    records = open_sources([data]).records
    config = quick_config("seed-cnn", None, data={"balance": "source-class-generator", "data_dir": data},
                          preprocess={"image_size": 32})  # fmt: skip
    datasets = RunDatasets(config, {"train": records, "val": [], "test": []}, "test", False, [data])
    weights = datasets.sampler_weights()
    assert weights is not None
    totals: dict[str, float] = {}
    for record, weight in zip(datasets.train_records, weights.tolist(), strict=True):
        generator = record.path.name.split("_")[0]
        totals[generator] = totals.get(generator, 0.0) + weight
    # Each (source, class) pair weighs 1; inside the fakes, sqrt(4) : sqrt(1) = 2 : 1.
    assert totals == pytest.approx({"cam": 1.0, "big": 2 / 3, "small": 1 / 3})


def test_threshold_per_collection_is_the_strictest_by_hand():
    # Collection a: 50 reals at 0.000..0.245; b: 50 reals at 0.500..0.745; 4% allows two reals of each at/above.
    p_fake = np.concatenate([np.arange(50) / 200, 0.5 + np.arange(50) / 200, [0.9, 0.95]])
    labels = np.array([REAL] * 100 + [FAKE] * 2)
    collections = ["s/a"] * 50 + ["s/b"] * 50 + ["s/fake-gen"] * 2
    threshold, rates = threshold_per_collection(p_fake, labels, collections, 0.04)
    assert threshold == pytest.approx(0.735) and threshold > p_fake[97]  # just above b's third highest real
    assert rates["s/a"]["fpr"] == 0.0 and rates["s/b"]["fpr"] == pytest.approx(0.04)
    assert rates["s/a"]["own_threshold"] == pytest.approx(0.235, abs=1e-6)
    # A pooled threshold (100 reals: four allowed) would call 4 of b's 50 reals fake, 8%.
    pooled = calibrate(np.log(np.stack([1 - p_fake, p_fake], 1) + 1e-9), labels, 0.04)
    assert np.mean(pooled.report["val_fpr_at_threshold"]) <= 0.05


def test_small_real_collections_are_judged_together_per_source():
    labels = np.array([REAL] * 60 + [REAL] * 5 + [REAL] * 6 + [FAKE])
    names = ["s/big"] * 60 + ["s/tiny"] * 5 + ["s/tiny2"] * 6 + ["s/gen"]
    joined = pooled_collections(names, labels)
    assert set(joined[:60]) == {"s/big"} and set(joined[60:71]) == {"s/other"}
    assert joined[-1] == "s/other"  # a generator without reals joins too; only reals count


def test_calibration_reports_each_collections_rate(tmp_path: Path):
    rng = np.random.default_rng(0)
    p_fake = np.concatenate([rng.uniform(0, 0.6, 60), rng.uniform(0.2, 0.9, 60), rng.uniform(0.5, 1, 40)])
    labels = np.array([REAL] * 120 + [FAKE] * 40)
    logits = np.log(np.stack([1 - p_fake, p_fake], 1))
    result = calibrate(logits, labels, 0.1, ["x/a"] * 60 + ["x/b"] * 60 + ["x/g"] * 40)
    rates = result.report["val_fpr_per_collection"]
    assert set(rates) == {"x/a", "x/b"} and all(r["fpr"] <= 0.1 for r in rates.values())
    json.dumps(result.report)  # stored in the card: plain types only


def test_breakdown_gives_catch_rates_and_roc_auc_against_the_reals():
    scores = Scores(
        paths=["a", "b", "c", "d", "e", "f"],
        labels=np.array([REAL, REAL, FAKE, FAKE, FAKE, FAKE]),
        p_fake=np.array([0.1, 0.6, 0.9, 0.4, 0.8, 0.7]),
        metadata=[{"generator": g} for g in ["cam", "cam", "sd", "sd", "mj", "mj"]],
    )
    table = breakdown(scores, "generator", threshold=0.5)
    assert table["cam"]["called_fake"] == pytest.approx(0.5) and table["cam"]["roc_auc"] is None
    assert table["sd"]["called_fake"] == pytest.approx(0.5)
    # sd's fakes 0.9 and 0.4 against reals 0.1 and 0.6: 3 of 4 pairs ranked right.
    assert table["sd"]["roc_auc_vs_reals"] == pytest.approx(0.75)
    assert table["mj"]["roc_auc_vs_reals"] == pytest.approx(1.0) and "roc_auc_vs_reals" not in table["cam"]
    with pytest.raises(DataError, match="metadata column"):
        breakdown(scores, "nope", threshold=0.5)


def test_excluded_generators_leave_the_run(tmp_path: Path):
    manifest = manifest_set(tmp_path / "d", {"cam": ("real", 10), "sd": ("fake", 6), "mj": ("fake", 6)})
    data = str(manifest.parent)
    config = quick_config("seed-cnn", None, data={"data_dir": data, "exclude_generators": ["mj"], "inspect": False},
                          preprocess={"image_size": 32})  # fmt: skip
    run = train(config, tmp_path / "run", quiet=True)
    split = (run.run_dir / "split.csv").read_text()
    assert "sd_000" in split and "mj_" not in split
    wrong = quick_config("seed-cnn", None, data={"data_dir": data, "exclude_generators": ["dalle"]},
                         preprocess={"image_size": 32})  # fmt: skip
    with pytest.raises(DataError, match="dalle"):
        train(wrong, tmp_path / "run2", quiet=True)


@pytest.mark.slow
def test_leave_one_generator_out_tests_each_generator_it_never_saw(tmp_path: Path, capsys):
    manifest = manifest_set(tmp_path / "d", {"cam": ("real", 16), "sd": ("fake", 8), "mj": ("fake", 8)}, size=32)
    out = tmp_path / "logo"
    args = ["crosseval", "--data", str(manifest.parent), "--leave-one-generator-out", "d", "--held-out", "sd",
            "--preset", "seed-cnn", "--epochs", "1", "--out", str(out), "--set", "preprocess.image_size=32",
            "--set", "data.val_fraction=0.25", "--quiet"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((out / "leave-one-generator-out.json").read_text())
    assert set(summary["folds"]) == {"sd"}
    fold = summary["folds"]["sd"]
    assert fold["n_fake"] == 8 and 0 < fold["n_real"] < 16  # every sd image against the held-out test reals
    assert "sd_" not in (out / "without-sd" / "split.csv").read_text()
    assert "| sd |" in (out / "leave-one-generator-out.md").read_text()
    assert main([*args[:5], "--held-out", "dalle", *args[7:]]) == 2
    assert "dalle" in capsys.readouterr().err
