import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecheck.data.dataset import scan_readable
from facecheck.data.discovery import FAKE, REAL, class_of_folder, discover, limit_per_class
from facecheck.data.images import load_image
from facecheck.data.splits import make_split, read_split, write_split
from facecheck.data.synthetic import make_synthetic_dataset
from facecheck.errors import DataError

from .conftest import write_face_set


@pytest.mark.parametrize(
    ("name", "label"),
    [("real", REAL), ("Real", REAL), ("training_real", REAL), ("fake", FAKE), ("Fake", FAKE), ("training_fake", FAKE)],
)
def test_class_folder_spellings(name, label):
    assert class_of_folder(name) == label


def test_unknown_folder_is_not_a_class():
    assert class_of_folder("notes") is None


def test_discovery_is_recursive_and_case_insensitive(tmp_path: Path):
    for rel in ["Real/a.JPG", "Real/sub/b.jpeg", "Real/c.PNG", "Fake/d.webp", "Fake/deep/er/e.BMP", "Fake/f.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    records = discover(tmp_path)
    assert Counter(r.label for r in records) == {REAL: 3, FAKE: 2}


def test_discovery_survives_a_symlink_loop(tmp_path: Path):
    root = write_face_set(tmp_path, per_class=2)
    os.symlink(root / "real", root / "real" / "loop")
    assert len(discover(root)) == 4


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "data folder not found"),
        ([], "no class folders"),
        (["real/a.png"], "only one class has images"),
        (["real/", "fake/"], "no images"),
    ],
)
def test_discovery_errors(tmp_path: Path, layout, message):
    root = tmp_path / "d"
    if layout is not None:
        root.mkdir()
        for rel in layout:
            path = root / rel
            if rel.endswith("/"):
                path.mkdir(parents=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (32, 32)).save(path)
    with pytest.raises(DataError, match=message):
        discover(root)


def test_image_modes_become_rgb(tmp_path: Path):
    made = {
        "gray.png": Image.new("L", (40, 30), 128),
        "cmyk.jpg": Image.new("CMYK", (40, 30), (0, 50, 100, 0)),
        "rgba.png": Image.new("RGBA", (40, 30), (255, 0, 0, 0)),
        "palette.png": Image.new("P", (40, 30), 3),
        "sixteen.png": Image.fromarray(np.linspace(0, 65535, 1200, dtype=np.uint16).reshape(30, 40)),
    }
    for name, image in made.items():
        image.save(tmp_path / name)
    for name in made:
        image = load_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == (40, 30)
    # fully transparent pixels are composited onto white, not black
    assert load_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    # 16-bit range is scaled, not clipped to white
    sixteen = np.asarray(load_image(tmp_path / "sixteen.png"))
    assert sixteen.min() == 0 and sixteen.max() == 255


def test_bad_images_get_clear_errors(tmp_path: Path):
    (tmp_path / "text.jpg").write_text("this is not a picture")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(DataError, match="not a readable image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(DataError, match="truncated"):
        load_image(tmp_path / "truncated.jpg")
    with pytest.raises(DataError, match="not a readable image"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(DataError, match="too small"):
        load_image(tmp_path / "tiny.png", min_size=16)
    with pytest.raises(DataError, match="file not found"):
        load_image(tmp_path / "nope.png")


def test_scan_keeps_good_and_reports_bad(tmp_path: Path):
    root = write_face_set(tmp_path, per_class=3)
    (root / "fake" / "broken.jpg").write_text("nope")
    records = discover(root)
    good, bad = scan_readable(records, min_size=16, progress=False)
    assert len(good) == 6
    assert len(bad) == 1 and bad[0][0].endswith("broken.jpg")


def test_split_is_deterministic_stratified_and_disjoint(tmp_path: Path):
    records = discover(write_face_set(tmp_path, per_class=30, size=32))
    first = make_split(records, test_fraction=0.3, val_fraction=0.1, seed=7)
    second = make_split(records, test_fraction=0.3, val_fraction=0.1, seed=7)
    other = make_split(records, test_fraction=0.3, val_fraction=0.1, seed=8)
    assert first == second
    assert first["test"] != other["test"]
    paths = [r.path for part in first.values() for r in part]
    assert len(paths) == len(set(paths)) == 60
    assert len(first["test"]) == 18
    assert Counter(r.label for r in first["test"]) == {REAL: 9, FAKE: 9}
    train_counts = Counter(r.label for r in first["train"])
    assert abs(train_counts[REAL] - train_counts[FAKE]) <= 1


def test_split_file_round_trip(tmp_path: Path):
    root = write_face_set(tmp_path / "d", per_class=5, size=32)
    split = make_split(discover(root), 0.4, 0.0, seed=0)
    write_split(split, tmp_path / "split.csv", root)
    assert "real/000.png" in (tmp_path / "split.csv").read_text() or "fake/" in (tmp_path / "split.csv").read_text()
    assert read_split(tmp_path / "split.csv", root) == split


def test_split_needs_two_per_class(tmp_path: Path):
    records = discover(write_face_set(tmp_path, per_class=1, size=32))
    with pytest.raises(DataError, match="at least 2"):
        make_split(records, 0.3, 0.0, seed=0)


def test_limit_per_class(tmp_path: Path):
    records = discover(write_face_set(tmp_path, per_class=5, size=32))
    assert Counter(r.label for r in limit_per_class(records, 2)) == {REAL: 2, FAKE: 2}


def test_synthetic_set_is_deterministic(tmp_path: Path):
    a = make_synthetic_dataset(tmp_path / "a", per_class=3, seed=1)
    b = make_synthetic_dataset(tmp_path / "b", per_class=3, seed=1)
    for name in ("real/real_0002.png", "fake/fake_0001.png"):
        assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name)))
    assert len(discover(a)) == 6


def test_decompression_bombs_are_refused(tmp_path: Path):
    # 9000 x 8000 = 72 million pixels, above the 64 million limit; a 1-bit PNG keeps the file small.
    Image.new("1", (9000, 8000)).save(tmp_path / "bomb.png")
    with pytest.raises(DataError, match="too large"):
        load_image(tmp_path / "bomb.png")
