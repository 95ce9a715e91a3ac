"""Grad-CAM works for every registered model and writes overlays."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.cli import main
from facecheck.config import get_preset, merge
from facecheck.evaluation.explain import gradcam
from facecheck.models import create_model, list_models

from .conftest import write_face_set


@pytest.mark.parametrize("name", list_models())
def test_gradcam_for_every_registered_model(name):
    torch.manual_seed(0)
    model = create_model(name, image_size=64)
    maps = gradcam(model, torch.randn(2, 3, 64, 64))
    assert maps.shape == (2, 64, 64)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6


def test_explain_command_writes_overlays_and_reports_bad_files(tmp_path: Path, capsys):
    config = merge(get_preset("seed-cnn"), {"preprocess": {"image_size": 64}})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    images = sorted(write_face_set(tmp_path / "d", per_class=1).rglob("*.png"))
    (tmp_path / "bad.jpg").write_text("no")
    code = main(["explain", "--model", str(tmp_path / "m.pt"), *map(str, images), str(tmp_path / "bad.jpg"),
                 "--out", str(tmp_path / "cams"), "--json"])  # fmt: skip
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert "not a readable image" in results[-1]["error"]
    for entry in results[:-1]:
        picture = np.asarray(Image.open(entry["heatmap"]))
        # a readable size (the 64 px view is drawn large, beside its overlay, with a colour scale and words)
        assert picture.shape[1] >= 900 and picture.shape[0] >= 500 and picture.shape[2] == 3
        assert "'fake'" in entry["heat_means"]


def test_explanation_figure_says_what_the_heat_means_for_each_verdict():
    from facecheck.evaluation.explain import explanation_figure, heat_meaning, overlay

    assert "too weak" in heat_meaning("real") and "evidence for its verdict" in heat_meaning("fake")
    view = Image.new("RGB", (64, 64), (200, 180, 160))
    cold = np.zeros((64, 64))
    # no evidence: the picture shows as it is (no blue tint)
    assert np.array_equal(np.asarray(overlay(view, cold)), np.asarray(view))
    picture = explanation_figure(view, cold, 0.31, "real", 0.5, notice="a note")
    assert picture.size == (1000, 580)


def _checkpoint(tmp_path: Path, **preprocess) -> Path:
    config = merge(get_preset("seed-cnn"), {"preprocess": {"image_size": 64, **preprocess}})
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    return tmp_path / "m.pt"


def test_explain_keeps_files_of_the_same_name_apart(tmp_path: Path, capsys):
    model = _checkpoint(tmp_path)
    faces = write_face_set(tmp_path / "d", per_class=1)
    same_name = [faces / "real" / "000.png", faces / "fake" / "000.png"]
    Image.open(same_name[0]).convert("RGB").save(faces / "real" / "000.jpg")
    inputs = [*same_name, faces / "real" / "000.jpg", same_name[0]]
    code = main(["explain", "--model", str(model), *map(str, inputs), "--out", str(tmp_path / "cams"), "--json"])
    assert code == 0
    written = [Path(entry["heatmap"]) for entry in json.loads(capsys.readouterr().out)]
    assert len(set(written)) == len(inputs) and all(path.is_file() for path in written)
    assert [path.relative_to(tmp_path / "cams").as_posix() for path in written] == [
        "real/000.gradcam.png", "fake/000.gradcam.png", "real/000-2.gradcam.png", "real/000-3.gradcam.png"
    ]  # fmt: skip


def test_explain_scores_with_the_models_test_time_views(tmp_path: Path, capsys):
    from facecheck.inference.predictor import Detector

    model = _checkpoint(tmp_path, tta="flip")
    images = sorted(write_face_set(tmp_path / "d", per_class=2).rglob("*.png"))
    assert main(["explain", "--model", str(model), *map(str, images), "--out", str(tmp_path / "c"), "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    predicted = Detector.load(model, device="cpu").predict(images)
    for entry, prediction in zip(explained, predicted, strict=True):
        assert abs(entry["p_fake"] - prediction.p_fake) <= 1e-6 and entry["label"] == prediction.label
