"""Verdicts come with their limits: no face check possible here, a picture far from the model's size,
the model and its scope beside machine output; and a cached detection never outlives its detector."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecheck.cli import main
from facecheck.config import PreprocessConfig
from facecheck.data import faces as faces_module
from facecheck.data.transforms import size_notice
from facecheck.errors import WeightsError
from facecheck.inference.predictor import Detector


@pytest.fixture
def no_face_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an install without facenet-pytorch."""

    def missing() -> Path:
        raise WeightsError(
            f"the face detector (MTCNN from facenet-pytorch) is not installed: {faces_module.INSTALL_HINT}"
        )

    monkeypatch.setattr(faces_module, "_weights_dir", missing)


def test_a_promised_face_check_that_cannot_be_made_is_said_beside_every_verdict(trained_run, no_face_detector):
    run, _ = trained_run
    detector = Detector.load(run)
    detector.face_check = True  # as the shipped model's card says
    blue = Image.new("RGB", (64, 64), (0, 0, 255))
    (result,) = detector.predict([blue])
    assert result.label in ("real", "fake", "uncertain")
    assert "not checked for a face" in result.notice and "pip install --no-deps facenet-pytorch" in result.notice
    with pytest.raises(WeightsError, match="not installed"):
        Detector.load(run, face_check=True)  # asked for by name: refused


def test_cli_face_check_without_detector_is_one_line_or_a_warning(trained_run, no_face_detector, tmp_path, capsys):
    run, data = trained_run
    image = str(sorted((data / "real").iterdir())[0])
    assert main(["predict", "--model", str(run), "--face-check", image]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--face-check: the face detector" in err
    out = tmp_path / "r.csv"
    code = main(["predict", "--model", str(run), "--no-face-check", image, "--out", str(out)])
    assert code == 0 and "WARNING" not in capsys.readouterr().err


def test_cache_of_another_install_is_never_read_without_the_detector(monkeypatch, no_face_detector):
    """Detections are keyed by the detector's identity, and no cache is read when there is none."""
    image = Image.new("RGB", (32, 32), (0, 0, 255))
    read = []
    monkeypatch.setattr(faces_module, "_cache_path", lambda image: read.append(image))
    with pytest.raises(WeightsError):
        faces_module.detect_faces(image)
    assert read == []
    assert faces_module.face_detector_problem().startswith("the face detector")


def test_cache_key_names_the_detector(monkeypatch):
    image = Image.new("RGB", (32, 32), (0, 0, 255))
    monkeypatch.setattr(faces_module, "detector_identity", lambda: "one")
    first = faces_module._cache_path(image)
    monkeypatch.setattr(faces_module, "detector_identity", lambda: "another")
    assert faces_module._cache_path(image) != first


def test_size_notices():
    native = PreprocessConfig(image_size=256, resize="none")
    assert "only the central 256x256 px of this 600x600 px picture" in size_notice(native, (600, 600))
    assert size_notice(native, (256, 256)) is None
    square = PreprocessConfig(image_size=224, resize="square")
    assert size_notice(square, (600, 600)) is None
    assert "shrunk to 224 px" in size_notice(square, (4000, 3000))
    assert "far smaller" in size_notice(square, (64, 64))
    assert size_notice(PreprocessConfig(image_size=224, face_crop=True), (4000, 3000)) is None


def test_predict_out_says_the_model_and_has_a_notice_column(trained_run, tmp_path: Path, capsys):
    run, _ = trained_run
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big)
    out = tmp_path / "r.csv"
    assert main(["predict", "--model", str(run), "--no-face-check", str(big), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "facecheck: model: " in err and "threshold" in err
    (row,) = csv.DictReader(out.open())
    assert "shrunk to 64 px" in row["notice"] and row["label"] in ("real", "fake", "uncertain")


def test_the_card_says_when_its_face_check_is_not_available_here(no_face_detector, capsys):
    assert main(["models", "--card"]) == 0
    assert "Face check: NOT AVAILABLE HERE (the face detector" in capsys.readouterr().out


def test_a_native_pixel_model_says_it_judged_only_the_centre(tmp_path: Path):
    """Point 8: the default preset (resize none) never silently judges a large photo from its centre."""
    from facecheck.checkpoint import build_model, card_for, save_checkpoint

    from .conftest import quick_config

    config = quick_config("seed-cnn", None, preprocess={"image_size": 64, "resize": "none"})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    detector = Detector.load(tmp_path / "m.pt", face_check=False)
    large, fitting = Image.new("RGB", (150, 120), (90, 80, 70)), Image.new("RGB", (64, 64), (90, 80, 70))
    first, second = detector.predict([large, fitting])
    assert "only the central 64x64 px of this 150x120 px picture were judged" in first.notice
    assert second.notice is None


def test_a_face_crop_model_without_the_face_detector_judges_the_whole_picture_and_says_so(
    no_face_detector, tmp_path, capsys
):
    """The shipped model judges faces; where plain pip brought no face detector, every verdict says that the
    whole picture was judged instead (the card's rule for pictures without a face), and --face-check asked for
    by name stops with one line."""
    import csv

    from facecheck.checkpoint import build_model, card_for, save_checkpoint

    from .conftest import quick_config

    config = quick_config("seed-cnn", None, preprocess={"image_size": 64, "face_crop": True})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    Image.new("RGB", (64, 64), (90, 80, 70)).save(tmp_path / "x.png")
    assert main(["predict", "--model", str(tmp_path / "m.pt"), str(tmp_path / "x.png"), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    (row,) = csv.DictReader(out.splitlines())
    assert row["label"] in ("real", "fake") and "the whole picture was judged, not its faces" in row["notice"]
    assert "pip install --no-deps" in row["notice"] and "not checked for a face" in err
    assert main(["predict", "--model", str(tmp_path / "m.pt"), str(tmp_path / "x.png"), "--face-check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("facecheck: error: --face-check: the face detector")


def test_training_on_pictures_larger_than_a_native_pixel_model_sees_says_so(tmp_path: Path):
    from facecheck.data.transforms import size_warning

    native = PreprocessConfig(image_size=256, resize="none")
    words = size_warning(native, [(600, 600), (600, 400), (256, 256)])
    assert words.startswith("2 of 3 images are far from what the model sees") and "resize=fit" in words
    assert size_warning(native, [(256, 256)]) is None


def test_train_log_warns_about_pictures_judged_from_their_centre(tmp_path: Path, capsys):
    from .conftest import write_face_set

    data = write_face_set(tmp_path / "faces", per_class=8, size=96)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--preset", "seed-cnn", "--epochs", "1"]
    argv += ["--set", "preprocess.image_size=64", "--set", "preprocess.resize=none", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    log = (tmp_path / "r" / "train.log").read_text()
    assert "WARNING: 16 of 16 images are far from what the model sees, e.g. only the central 64x64 px" in log


def test_evaluate_warns_once_when_the_pictures_are_far_from_the_models_size(tmp_path: Path):
    from facecheck.api import evaluate
    from facecheck.checkpoint import build_model, card_for, save_checkpoint

    from .conftest import quick_config, write_face_set

    config = quick_config("seed-cnn", None, preprocess={"image_size": 64, "resize": "none"})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    data = write_face_set(tmp_path / "faces", per_class=4, size=96)
    warnings = evaluate(tmp_path / "m.pt", data)["warnings"]
    assert any(w.startswith("8 of 8 images are far from what the model sees") for w in warnings), warnings
