"""Inference engines agree: the PyTorch and ONNX Runtime paths give the same probabilities."""

import os
from pathlib import Path

import pytest

from facecheck.checkpoint import build_model, save_checkpoint
from facecheck.errors import DataError
from facecheck.inference.predictor import Detector

from .conftest import quick_config, write_face_set

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.mark.parametrize("preset", ["seed-cnn", "seed-mobilenet"])
def test_onnx_backend_matches_torch_on_real_images(tmp_path: Path, preset: str):
    config = quick_config(preset, None, model={"pretrained": False})
    save_checkpoint(tmp_path / "m.pt", build_model(config), config, epoch=1, metrics={})
    images = sorted(write_face_set(tmp_path / "d", per_class=3).rglob("*.png"))
    torch_results = Detector.load(tmp_path / "m.pt").predict(images)
    onnx_detector = Detector.load(tmp_path / "m.pt", backend="onnx")
    assert onnx_detector.backend == "onnx"
    onnx_results = onnx_detector.predict(images)
    for a, b in zip(torch_results, onnx_results, strict=True):
        assert a.p_fake == pytest.approx(b.p_fake, abs=1e-5)
        assert a.label == b.label
    # the export is cached: a second load does not export again
    assert len(list((Path(os.environ["FACECHECK_CACHE_DIR"]) / "onnx").glob("*.onnx"))) >= 1


def test_unknown_backend(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), config, epoch=1, metrics={})
    with pytest.raises(DataError, match="unknown backend"):
        Detector.load(tmp_path / "m.pt", backend="tensorrt")
