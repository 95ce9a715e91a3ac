"""Face cropping: geometry and policies with a stand-in detector; MTCNN itself on real photos when present."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecheck.cli import main
from facecheck.config import PreprocessConfig
from facecheck.data import faces as faces_module
from facecheck.data.faces import Face, FaceCrop, NoFaceError, crop_box, crop_folder, verify_mtcnn_weights
from facecheck.data.transforms import eval_transform
from facecheck.errors import DataError

from .conftest import SHARED_DATA, write_face_set

LFW = SHARED_DATA / "lfw-faceswap"


def test_crop_box_is_square_with_margin_and_inside_the_image():
    face = Face((40.0, 50.0, 80.0, 110.0), 0.99)  # 40 x 60
    assert crop_box(face, (200, 200), 0.0) == (30, 50, 90, 110)
    x0, y0, x1, y1 = crop_box(face, (200, 200), 0.5)
    assert x1 - x0 == y1 - y0 == 120
    # near the border the square is shifted inside, never cut
    x0, y0, x1, y1 = crop_box(Face((0.0, 0.0, 30.0, 30.0), 0.99), (100, 100), 0.5)
    assert (x0, y0) == (0, 0) and x1 - x0 == 60


@pytest.fixture
def stand_in_detector(monkeypatch):
    """Faces are wherever a pure red square is; no red means no face."""

    def detect(image, use_cache=True):
        pixels = np.asarray(image)
        red = (pixels[..., 0] == 255) & (pixels[..., 1] == 0) & (pixels[..., 2] == 0)
        if not red.any():
            return []
        rows, cols = np.nonzero(red)
        return [Face((float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)), 0.99)]

    monkeypatch.setattr(faces_module, "detect_faces", detect)


def _with_face(size=100, box=(20, 30, 60, 70)) -> Image.Image:
    image = Image.new("RGB", (size, size), (0, 90, 0))
    image.paste((255, 0, 0), box)
    return image


def test_face_crop_policies(stand_in_detector):
    cropped = FaceCrop(margin=0.0)(_with_face())
    assert cropped.size == (40, 40) and cropped.getpixel((5, 5)) == (255, 0, 0)
    faceless = Image.new("RGB", (50, 50))
    assert FaceCrop(no_face="keep")(faceless).size == (50, 50)
    with pytest.raises(NoFaceError):
        FaceCrop(no_face="skip")(faceless)
    with pytest.raises(DataError, match="no-face policy"):
        FaceCrop(no_face="maybe")


def test_pipelines_crop_the_same_way(stand_in_detector):
    config = PreprocessConfig(image_size=32, face_crop=True, face_margin=0.0)
    tensor = eval_transform(config)(_with_face())
    # the whole input is the red face after cropping: normalised red everywhere
    assert tensor.shape == (3, 32, 32)
    assert float(tensor[0].min()) > 2.0 and float(tensor[1].max()) < -1.5


def test_crop_folder_skips_faceless_resumes_and_never_writes_into_the_source(tmp_path: Path, stand_in_detector):
    source = tmp_path / "src"
    (source / "real").mkdir(parents=True)
    _with_face().save(source / "real" / "a.png")
    Image.new("RGB", (60, 60)).save(source / "real" / "none.png")
    (source / "real" / "broken.jpg").write_text("x")
    summary = crop_folder(source, tmp_path / "out", size=16, progress=False)
    assert (summary.written, summary.no_face, summary.unreadable) == (1, 1, 1)
    assert Image.open(tmp_path / "out" / "real" / "a.png").size == (16, 16)
    again = crop_folder(source, tmp_path / "out", size=16, progress=False)
    assert again.already_done == 1 and again.written == 0
    with pytest.raises(DataError, match="outside the source"):
        crop_folder(source, source / "crops", progress=False)
    with pytest.raises(NoFaceError, match="no face found"):
        crop_folder(source, tmp_path / "out2", no_face="fail", progress=False)


def test_training_with_face_crop_skips_faceless_images_and_stores_the_choice(tmp_path: Path, capsys, monkeypatch):
    data = write_face_set(tmp_path / "d", per_class=10)

    def detect(image, use_cache=True):  # a "face" in every image but the first real one
        return [] if np.asarray(image)[0, 0].sum() == np.asarray(first)[0, 0].sum() else [Face((8, 8, 56, 56), 0.99)]

    first = Image.open(sorted((data / "real").iterdir())[0]).convert("RGB")
    monkeypatch.setattr(faces_module, "detect_faces", detect)
    code = main(["train", "--preset", "seed-cnn", "--data", str(data),
                 "--face-crop", "--no-face", "skip", "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--set", "preprocess.image_size=32", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "left out 1 image(s) with no face" in (tmp_path / "r" / "train.log").read_text()
    checkpoint_preprocess = json.loads(capsys.readouterr().out)  # the run summary
    assert checkpoint_preprocess["test"]["n"] > 0
    from facecheck.checkpoint import read_checkpoint

    saved = read_checkpoint(tmp_path / "r")["card"].preprocess
    assert saved.face_crop is True and saved.no_face == "skip"


@pytest.mark.shared_data
@pytest.mark.skipif(not LFW.is_dir(), reason=f"real data not present: {LFW} is missing")
def test_mtcnn_finds_the_face_in_real_photographs(tmp_path: Path):
    verify_mtcnn_weights()
    photo = Image.open(sorted((LFW / "real").iterdir())[0]).convert("RGB")
    found = faces_module.detect_faces(photo)
    assert len(found) >= 1 and found[0].probability > 0.9
    left, top, right, bottom = found[0].box
    # LFW photos are centred on the face
    assert abs((left + right) / 2 - 125) < 30 and abs((top + bottom) / 2 - 125) < 40
    assert faces_module.detect_faces(photo) == found  # from the cache now


def test_tampered_mtcnn_weights_are_refused(tmp_path: Path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("pnet.pt", "rnet.pt", "onet.pt"):
        (folder / name).write_bytes(b"not the weights")
    monkeypatch.setattr(faces_module, "_weights_dir", lambda: folder)
    from facecheck.errors import WeightsError

    with pytest.raises(WeightsError, match="does not match"):
        verify_mtcnn_weights()


def test_face_check_answers_no_face_for_grey_and_noise(trained_run, tmp_path: Path):
    """A flat grey picture and random noise get "no face", never a confident verdict (real MTCNN)."""
    from PIL import Image

    from facecheck.inference.predictor import NO_FACE, Detector

    run, _ = trained_run
    grey = Image.new("RGB", (160, 160), (128, 128, 128))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (160, 160, 3), dtype=np.uint8))
    checked = Detector.load(run, face_check=True)
    for prediction in checked.predict([grey, noise]):
        assert prediction.label == NO_FACE and "no face found" in prediction.notice
        assert prediction.p_fake is not None  # the score is still reported, beside the notice
    unchecked = Detector.load(run, face_check=False)
    assert all(p.label in ("real", "fake", "uncertain") for p in unchecked.predict([grey, noise]))
