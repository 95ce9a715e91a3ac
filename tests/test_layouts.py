"""Public data-set layouts and manifests are recognised, with their own splits, groups and metadata."""

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from facecheck.cli import main
from facecheck.data.layouts import detect_layout, open_dataset
from facecheck.errors import DataError

from .conftest import write_face_set


def _images(folder: Path, count: int, start: int = 0, prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        Image.new("RGB", (40, 40), (index * 7 % 255, 30, 60)).save(folder / f"{prefix}{index}.jpg")


def test_140k_layout_uses_its_own_split(tmp_path: Path):
    base = tmp_path / "real_vs_fake" / "real-vs-fake"
    for part, count in (("train", 6), ("valid", 2), ("test", 3)):
        for name in ("real", "fake"):
            _images(base / part / name, count, prefix=f"{part}{name}")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "140k-real-and-fake-faces"
    assert {k: len(v) for k, v in dataset.split.items()} == {"train": 12, "val": 4, "test": 6}


def test_deepfake_and_real_images_layout(tmp_path: Path):
    for part in ("Train", "Validation", "Test"):
        for name in ("Real", "Fake"):
            _images(tmp_path / part / name, 3, prefix=part)
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "deepfake-and-real-images"
    assert {k: len(v) for k, v in dataset.split.items()} == {"train": 6, "val": 6, "test": 6}


def test_ciplab_layout_reads_difficulty_and_drops_the_second_copy(tmp_path: Path):
    for copy in ("real_and_fake_face", "real_and_fake_face_detection/real_and_fake_face"):
        _images(tmp_path / copy / "training_real", 3, prefix="real_")
        for offset, difficulty in enumerate(("easy", "mid", "hard")):
            _images(tmp_path / copy / "training_fake", 1, start=10 + offset, prefix=f"{difficulty}_")
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "ciplab-real-and-fake-face"
    assert Counter(r.label for r in dataset.records) == {0: 3, 1: 3}
    assert sorted(m["difficulty"] for m in dataset.metadata.values()) == ["easy", "hard", "mid", "real", "real", "real"]
    assert "duplicate file(s) dropped" in dataset.notes[0]


def test_manifest_with_groups_and_split(tmp_path: Path):
    root = write_face_set(tmp_path / "d", per_class=4, size=32)
    rows = ["path,label,group,split,source"]
    for index, path in enumerate(sorted(root.rglob("*.png"))):
        label = "fake" if path.parent.name == "fake" else "real"
        rows.append(f"{path.relative_to(root)},{label},person{index // 2},{'test' if index % 4 == 0 else 'train'},x")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    dataset = open_dataset(root)
    assert dataset.layout == "manifest"
    assert len(dataset.records) == 8 and len(dataset.split["test"]) == 2
    assert len(set(dataset.groups.values())) == 4
    assert all(m == {"source": "x"} for m in dataset.metadata.values())


def test_jsonl_manifest_and_its_errors(tmp_path: Path):
    write_face_set(tmp_path / "d", per_class=2, size=32)
    lines = [
        json.dumps({"path": f"{c}/00{i}.png", "label": 1 if c == "fake" else 0})
        for c in ("real", "fake")
        for i in (0, 1)
    ]
    (tmp_path / "d" / "set.jsonl").write_text("\n".join(lines))
    assert len(open_dataset(tmp_path / "d" / "set.jsonl").records) == 4
    (tmp_path / "bad.csv").write_text("file,kind\na.png,real\n")
    with pytest.raises(DataError, match="needs the columns path and label"):
        open_dataset(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("path,label\nnope.png,real\n")
    with pytest.raises(DataError, match="do not exist"):
        open_dataset(tmp_path / "missing.csv")
    (tmp_path / "label.csv").write_text("path,label\nd/real/000.png,maybe\n")
    with pytest.raises(DataError, match="neither real nor fake"):
        open_dataset(tmp_path / "label.csv")


def test_plain_class_folders_are_still_class_folders(tmp_path: Path):
    assert detect_layout(write_face_set(tmp_path, per_class=2, size=32)) == "class-folders"


def test_training_on_a_layout_with_its_own_split_uses_it(tmp_path: Path, capsys):
    for part, count in (("Train", 8), ("Validation", 3), ("Test", 4)):
        write_face_set(tmp_path / "set" / part, per_class=count, size=64, names=("Real", "Fake"), seed=len(part))
    code = main(["train", "--data", str(tmp_path / "set"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--set", "preprocess.image_size=32", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["test"]["n"] == 8
    log = (tmp_path / "run" / "train.log").read_text()
    assert "layout deepfake-and-real-images" in log and "own split" in log


def test_download_explains_what_is_missing(tmp_path: Path, monkeypatch, capsys):
    from facecheck.data import download as download_module

    assert main(["data", "download", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    monkeypatch.setattr(download_module.shutil, "which", lambda name: None)
    assert main(["data", "download", "140k-real-and-fake-faces", "--out", str(tmp_path)]) == 2
    assert "pip install kaggle" in capsys.readouterr().err
    failing = tmp_path / "kaggle"
    failing.write_text("#!/bin/sh\necho 'Max retries exceeded: network is unreachable' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(download_module.shutil, "which", lambda name: str(failing))
    assert main(["data", "download", "140k-real-and-fake-faces", "--out", str(tmp_path)]) == 2
    assert "network is unreachable" in capsys.readouterr().err
