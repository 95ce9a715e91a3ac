"""Per-face verdicts: every face of a picture judged with the model's own crop policy, the most suspicious
face deciding, one face detection serving the face check, the crops and the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.cli import main
from facecheck.data.images import load_image
from facecheck.data.transforms import FaceViews, eval_transform
from facecheck.inference.predictor import Detector
from tests.conftest import SHARED_DATA, quick_config

FACES = SHARED_DATA / "ffhq-stylegan" / "real"
needs_faces = pytest.mark.skipif(
    not FACES.is_dir(), reason="../shared/data/ffhq-stylegan is absent: these tests need photos of real faces"
)


def face_crop_model(tmp_path: Path, threshold: float = 0.5) -> Path:
    config = quick_config(
        "seed-cnn", None, preprocess={"image_size": 64, "face_crop": True, "normalize_jpeg": 75, "face_margin": 0.3}
    )
    torch.manual_seed(0)
    path = tmp_path / "faces.pt"
    save_checkpoint(path, build_model(config).eval(), card_for(config, threshold=threshold))
    return path


def group_photo(paths: list[Path], tile: int = 200) -> Image.Image:
    """Face photos side by side on a grey canvas, with a gap between them."""
    canvas = Image.new("RGB", (len(paths) * (tile + 40) + 40, tile + 80), (128, 128, 128))
    for index, path in enumerate(paths):
        canvas.paste(load_image(path).resize((tile, tile)), (40 + index * (tile + 40), 40))
    return canvas


@needs_faces
def test_every_face_is_judged_and_the_most_suspicious_decides(tmp_path: Path):
    detector = Detector.load(face_crop_model(tmp_path), face_check=True)
    photos = sorted(FACES.glob("*.jpg"))[:3]
    picture = group_photo(photos)
    result = detector.predict([np.asarray(picture)])[0]
    assert result.error is None and result.faces is not None and len(result.faces) == 3
    lefts = sorted(face.box[0] for face in result.faces)
    assert [round(left / 240) for left in lefts] == [0, 1, 2]  # one face per tile, boxes in canvas pixels
    scores = [face.p_fake for face in result.faces]
    assert all(0 <= s <= 1 for s in scores) and all(0.9 <= f.confidence <= 1 for f in result.faces)
    assert result.p_fake == max(scores) and result.decided_by == int(np.argmax(scores))
    assert result.label == detector.card.decide(result.p_fake)
    assert all(face.label == detector.card.decide(face.p_fake) for face in result.faces)


@needs_faces
def test_the_largest_face_scores_as_the_single_pipeline(tmp_path: Path):
    """Splitting the pipeline where the faces are found changes no number: the largest face's input equals
    the one-step evaluation transform's (JPEG normalisation, largest face's crop, resize, views)."""
    detector = Detector.load(face_crop_model(tmp_path), face_check=False)
    image = load_image(sorted(FACES.glob("*.jpg"))[0])
    from facecheck.data.faces import detect_faces

    views = FaceViews(detector.preprocess)
    normalised = views.normalised(image)
    largest = max(detect_faces(normalised), key=lambda f: f.area)
    assert torch.equal(views.views(normalised, largest), eval_transform(detector.preprocess)(image))
    result = detector.predict([image])[0]
    single = float(detector.predict_tensor(eval_transform(detector.preprocess)(image)[None])[0])
    assert result.p_fake == pytest.approx(single, abs=1e-6) and len(result.faces) == 1


@needs_faces
def test_a_picture_without_a_face_keeps_the_no_face_answer(tmp_path: Path):
    detector = Detector.load(face_crop_model(tmp_path), face_check=True)
    blue = np.zeros((120, 160, 3), dtype=np.uint8)
    blue[..., 2] = 200
    result = detector.predict([blue])[0]
    assert result.label == "no face" and result.faces == [] and result.decided_by is None
    assert "no face" in (result.notice or "")


@needs_faces
def test_predict_json_and_csv_carry_the_faces(tmp_path: Path, capsys):
    model = face_crop_model(tmp_path)
    picture = tmp_path / "group.png"
    group_photo(sorted(FACES.glob("*.jpg"))[:2]).save(picture)
    assert main(["predict", "--model", str(model), str(picture), "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert len(row["faces"]) == 2 and set(row["faces"][0]) == {"box", "confidence", "p_fake", "label"}
    assert row["decided_by"] in (0, 1) and row["p_fake"] == max(f["p_fake"] for f in row["faces"])
    assert main(["predict", "--model", str(model), str(picture), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "faces" in lines[0].split(",") and lines[1].split(",")[lines[0].split(",").index("faces")] == "2"


def test_ray_partitions_keep_the_faces(tmp_path: Path):
    """Ray scoring writes the same per-face schema as predict's JSON (a partition read back)."""
    pytest.importorskip("pyarrow")
    from facecheck.inference.ray_scoring import read_scores, write_partition

    face = {"box": [1, 2, 30, 40], "confidence": 0.99, "p_fake": 0.7, "label": "fake"}
    rows = {"path": ["a.jpg", "b.jpg"], "p_fake": [0.7, None], "label": ["fake", None],
            "faces": [[face], None], "decided_by": [0, None], "error": [None, "b.jpg: unreadable"]}  # fmt: skip
    write_partition(tmp_path / "part-00000-x.parquet", rows)
    scored = read_scores(tmp_path)
    assert scored[0]["faces"] == [face] and scored[0]["decided_by"] == 0
    assert scored[1]["faces"] is None and scored[1]["error"] == "b.jpg: unreadable"
