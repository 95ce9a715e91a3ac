"""Data inspection: JPEG quality, duplicates, shortcut warnings; group-aware splits and folds."""

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecheck.cli import main
from facecheck.data.discovery import discover
from facecheck.data.inspect import estimate_jpeg_quality, inspect_records
from facecheck.data.splits import fold_split, make_folds, make_split, read_split

from .conftest import write_face_set


@pytest.mark.parametrize("quality", [30, 75, 90, 95])
def test_jpeg_quality_is_read_from_the_quantisation_tables(quality):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=quality
    )
    assert estimate_jpeg_quality(Image.open(buffer).quantization) == quality


def test_no_table_no_quality():
    assert estimate_jpeg_quality(None) is None


def _set_with_quality_gap(root: Path, per_class: int = 12, qualities: tuple[int, int] = (90, 95)) -> Path:
    rng = np.random.default_rng(0)
    for name, quality in zip(("real", "fake"), qualities, strict=True):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg", quality=quality)
    return root


def test_quality_shortcut_is_reported_in_plain_words(tmp_path: Path):
    root = _set_with_quality_gap(tmp_path / "d")
    report = inspect_records(discover(root), root)
    assert report["per_class"]["real"]["jpeg_quality"]["median"] == 90
    assert report["per_class"]["fake"]["jpeg_quality"]["median"] == 95
    names = [w["property"] for w in report["shortcuts"]]
    assert "jpeg_quality" in names
    message = next(w["message"] for w in report["shortcuts"] if w["property"] == "jpeg_quality")
    assert "real: 90" in message and "fake: 95" in message and "--normalize-jpeg" in message


def test_balanced_set_has_no_shortcut(tmp_path: Path):
    root = _set_with_quality_gap(tmp_path / "d", qualities=(90, 90))
    report = inspect_records(discover(root), root)
    assert report["shortcuts"] == []


def test_the_synthetic_sets_file_size_shortcut_is_found(tmp_path: Path):
    # The synthetic fakes carry a checkerboard, which makes their PNGs larger: a real shortcut.
    root = write_face_set(tmp_path / "d", per_class=12)
    assert [w["property"] for w in inspect_records(discover(root), root)["shortcuts"]] == ["file_size"]


def test_exact_and_near_duplicates_are_grouped(tmp_path: Path):
    root = write_face_set(tmp_path / "d", per_class=8, size=64)
    original = root / "real" / "000.png"
    (root / "real" / "copy.png").write_bytes(original.read_bytes())  # exact
    Image.open(original).convert("RGB").save(root / "fake" / "resaved.jpg", quality=80)  # near, other class
    records = discover(root)
    report = inspect_records(records, root)
    sets = report["duplicates"]["sets"]
    assert report["duplicates"]["across_classes"] == 1
    together = next(s for s in sets if "real/000.png" in s["paths"])
    assert set(together["paths"]) == {"real/000.png", "real/copy.png", "fake/resaved.jpg"}
    groups = report["groups"]
    group_of = {str(r.path.relative_to(root)): g for r, g in zip(records, groups, strict=True)}
    assert len({group_of[p] for p in together["paths"]}) == 1
    # distinct faces are not merged
    assert len(set(groups)) == len(records) - 2


def test_groups_never_straddle_a_split(tmp_path: Path):
    records = discover(write_face_set(tmp_path, per_class=30, size=32))
    groups = [i // 3 for i in range(len(records))]  # blocks of three share a group
    for seed in range(5):
        split = make_split(records, 0.3, 0.2, seed, groups)
        side = {}
        for name, part in split.items():
            for record in part:
                side[record.path] = name
        for group in set(groups):
            members = [r.path for r, g in zip(records, groups, strict=True) if g == group]
            assert len({side[m] for m in members}) == 1
        counts = Counter(r.label for r in split["test"])
        assert abs(counts[0] - counts[1]) <= 3


def test_folds_are_group_aware_and_stratified(tmp_path: Path):
    records = discover(write_face_set(tmp_path, per_class=25, size=32))
    groups = [i // 2 for i in range(len(records))]
    fold_of = make_folds(records, 5, seed=0, groups=groups)
    assert sorted(Counter(fold_of).values()) == [10, 10, 10, 10, 10]
    for a, b in zip(range(0, len(records), 2), range(1, len(records), 2), strict=True):
        assert fold_of[a] == fold_of[b]
    split = fold_split(records, fold_of, 2, 0.1, 0, groups)
    assert {r.path for r in split["test"]} == {r.path for r, f in zip(records, fold_of, strict=True) if f == 2}
    assert not {r.path for r in split["train"]} & {r.path for r in split["test"]}


def test_cli_inspect_split_and_train_on_a_fold(tmp_path: Path, capsys):
    root = _set_with_quality_gap(tmp_path / "d", per_class=10)
    report_file = tmp_path / "out" / "report.html"
    assert main(["data", "inspect", str(root), "--json", "--report", str(report_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shortcuts"][0]["property"] == "jpeg_quality"
    html = report_file.read_text()
    assert "alone separates the classes" in html and "data:image/png;base64," in html

    assert main(["data", "split", str(root), "--folds", "3", "--out", str(tmp_path / "folds")]) == 0
    files = capsys.readouterr().out.split()
    assert [Path(f).name for f in files] == ["fold_0.csv", "fold_1.csv", "fold_2.csv"]
    fold = read_split(files[1], root)
    code = main(["train", "--preset", "seed-cnn", "--data", str(root),
                 "--split-file", files[1], "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--set", "preprocess.image_size=64", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["test"]["n"] == len(fold["test"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "WARNING: jpeg quality alone separates the classes" in log
    assert json.loads((tmp_path / "run" / "inspect.json").read_text())["shortcuts"]
