"""Odd inputs: sideways phone photos, FIFOs, non-UTF-8 file names, YAML bombs, crafted ONNX metadata."""

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from facecheck.config import get_preset, load_config_file, merge
from facecheck.data.discovery import discover, iter_images
from facecheck.data.images import load_image, to_rgb
from facecheck.data.splits import make_split, read_split, write_split
from facecheck.errors import CheckpointError, ConfigError, DataError

from .conftest import write_face_set

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = (255, 0, 0), (0, 0, 255)
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux file-name and FIFO semantics")


def _sideways_photo(path: Path) -> Path:
    """A 40x20 JPEG stored sideways (left half red, right half blue) with EXIF Orientation=6, as phones write."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer turns it 90 degrees clockwise: the stored left half ends on top
    image.save(path, quality=95, exif=exif.tobytes())
    return path


def _close(pixel: tuple[int, ...], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=True))


def test_exif_orientation_is_applied_when_reading_files(tmp_path: Path):
    image = load_image(_sideways_photo(tmp_path / "phone.jpg"))
    assert image.size == (20, 40)
    assert _close(image.getpixel((10, 5)), RED) and _close(image.getpixel((10, 35)), BLUE)


def test_exif_orientation_is_applied_to_opened_images(tmp_path: Path):
    # Detector.predict(PIL image) and the web service go through to_rgb.
    with Image.open(_sideways_photo(tmp_path / "phone.jpg")) as opened:
        opened.load()
        image = to_rgb(opened)
    assert image.size == (20, 40) and _close(image.getpixel((10, 5)), RED)
    plain = Image.new("RGB", (40, 20), RED)
    assert to_rgb(plain) is plain  # nothing to turn: no copy


def _in_thread(function, timeout: float = 20.0):
    """Run ``function`` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "blocked reading a FIFO"
    return outcome


@linux_only
def test_fifo_named_like_an_image_is_not_read(tmp_path: Path):
    data = write_face_set(tmp_path / "faces", per_class=3, size=32)
    fifo = data / "real" / "x.jpg"
    os.mkfifo(fifo)
    assert fifo not in iter_images(data)
    assert fifo not in [r.path for r in discover(data)]
    outcome = _in_thread(lambda: load_image(fifo))
    assert isinstance(outcome.get("error"), DataError) and "not a regular file" in str(outcome["error"])
    outcome = _in_thread(lambda: load_image(data))
    assert isinstance(outcome.get("error"), DataError) and "folder" in str(outcome["error"])


@linux_only
def test_non_utf8_file_names_round_trip_through_split_csv(tmp_path: Path):
    root = write_face_set(tmp_path / "d", per_class=4, size=32)
    odd = Path(os.fsdecode(os.fsencode(root / "fake") + b"/\xffodd\xfe.png"))
    Image.new("RGB", (32, 32), RED).save(odd)
    records = discover(root)
    assert odd in [r.path for r in records]
    split = make_split(records, 0.4, 0.0, seed=0)
    write_split(split, tmp_path / "split.csv", root)
    assert b"\xffodd\xfe.png" in (tmp_path / "split.csv").read_bytes()
    assert read_split(tmp_path / "split.csv", root) == split
    assert json.loads(json.dumps(str(odd))) == str(odd)


def test_a_failed_split_write_leaves_the_old_file(tmp_path: Path, monkeypatch):
    import facecheck.data.splits as splits

    root = write_face_set(tmp_path / "d", per_class=4, size=32)
    split = make_split(discover(root), 0.4, 0.0, seed=0)
    (tmp_path / "split.csv").write_text("old\n")

    class FailingWriter:
        def __init__(self, *args, **kwargs) -> None:
            self.rows = 0

        def writerow(self, row) -> None:
            self.rows += 1
            if self.rows > 2:
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "simulated")

    monkeypatch.setattr(splits.csv, "writer", FailingWriter)
    with pytest.raises(UnicodeEncodeError):
        write_split(split, tmp_path / "split.csv", root)
    assert (tmp_path / "split.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "split.csv"]


@linux_only
def test_train_and_predict_with_a_fifo_and_a_non_utf8_name(tmp_path: Path):
    data = write_face_set(tmp_path / "faces", per_class=10, size=48)
    os.mkfifo(data / "real" / "x.jpg")
    odd = Path(os.fsdecode(os.fsencode(data / "fake") + b"/\xff.png"))
    Image.open(data / "fake" / "000.png").save(odd)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    facecheck = [sys.executable, "-m", "facecheck"]
    train = [*facecheck, "train", "--preset", "seed-cnn", "--data", str(data), "--out", str(tmp_path / "run")]
    train += ["--epochs", "1", "--quiet", "--set", "preprocess.image_size=48"]
    done = subprocess.run(train, capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rows = (tmp_path / "run" / "split.csv").read_bytes()
    assert b"fake/\xff.png" in rows and b"x.jpg" not in rows

    predict = [*facecheck, "predict", "--model", str(tmp_path / "run"), "--format", "json"]
    done = subprocess.run([*predict, str(odd), str(data / "real" / "x.jpg")], capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    results = json.loads(done.stdout)
    assert results[0]["path"] == str(odd) and 0 <= results[0]["p_fake"] <= 1
    assert "not a regular file" in results[1]["error"]
    table = subprocess.run([*predict[:-2], str(odd)], capture_output=True, env=env, timeout=120)
    assert table.returncode == 0 and os.fsencode(odd) in table.stdout


def _alias_bomb(depth: int) -> str:
    """YAML of a few hundred bytes whose value expands to 9**depth strings."""
    lines = ["epochs:", "  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, depth):
        lines.append(f"  - &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_gives_a_short_error(tmp_path: Path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(7))  # its repr would be tens of megabytes
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError) as raised:
        merge(get_preset("seed-cnn"), load_config_file(path))
    assert len(str(raised.value)) < 300 and "epochs must be a whole number" in str(raised.value)


def test_oversized_config_file_is_refused(tmp_path: Path):
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 210_000 + "epochs: 2\n")  # 2 MB: no settings file is that big
    with pytest.raises(ConfigError, match="larger than"):
        load_config_file(path)


def _with_card(base: Path, target: Path, card) -> Path:
    """A copy of the ONNX file ``base`` whose facecheck metadata is ``card`` (a dict, or raw text)."""
    import onnx

    from facecheck.inference.export import METADATA_KEY

    graph = onnx.load(str(base))
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card if isinstance(card, str) else json.dumps(card)
    onnx.save(graph, str(target))
    return target


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny ONNX graph and a genuine card (from a saved seed-cnn checkpoint)."""
    pytest.importorskip("onnx")
    import warnings

    import torch

    from facecheck.checkpoint import card_for

    from .conftest import quick_config

    folder = tmp_path_factory.mktemp("onnx")
    config = quick_config("seed-cnn", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its retirement
        torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(folder / "base.onnx"), dynamo=False)
    return folder / "base.onnx", card_for(config, epoch=1).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": math.inf}, "threshold"),
        ({"class_names": ["real"]}, "class names"),
        ({"preprocess": {"image_size": "big"}}, "image_size"),
        ({"training": 5}, "malformed model card"),
    ],
)
def test_crafted_onnx_cards_are_refused(tmp_path: Path, capsys, exported, change, message):
    from facecheck.cli import main
    from facecheck.inference.export import read_onnx_card as read_card

    base, good = exported
    assert read_card(_with_card(base, tmp_path / "good.onnx", good)).to_dict() == good
    crafted = _with_card(base, tmp_path / "crafted.onnx", good | change)
    with pytest.raises(CheckpointError, match=message):
        read_card(crafted)
    image = tmp_path / "face.png"
    Image.new("RGB", (64, 64), RED).save(image)
    assert main(["predict", "--model", str(crafted), str(image)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", '"facecheck-checkpoint"'])
def test_malformed_onnx_metadata_is_a_checkpoint_error(tmp_path: Path, exported, metadata):
    from facecheck.inference.export import read_onnx_card as read_card

    with pytest.raises(CheckpointError):
        read_card(_with_card(exported[0], tmp_path / "odd.onnx", metadata))
