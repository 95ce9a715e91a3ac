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
        overlay = np.asarray(Image.open(entry["heatmap"]))
        assert overlay.shape == (64, 64, 3)
