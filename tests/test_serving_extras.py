"""The service with [serve] alone: a missing optional feature is a 503 with words, and never costs the verdict."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.inference.predictor import Detector
from facecheck.serving.app import ServeSettings, create_app

from .conftest import quick_config


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Detector:
    folder = tmp_path_factory.mktemp("model")
    config = quick_config("seed-cnn", None)
    save_checkpoint(folder / "m.pt", build_model(config), card_for(config, epoch=1, metrics={"val_accuracy": 0.5}))
    return Detector.load(folder / "m.pt")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def without_captum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)  # as with `pip install 'facecheck[serve]'` alone


def test_explain_without_captum_keeps_the_verdict(detector, without_captum):
    api = TestClient(create_app(detector, ServeSettings()))
    response = api.post("/v1/predict?explain=true", files={"file": ("x.png", png(), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] in ("real", "fake") and 0 <= body["p_fake"] <= 1
    assert "heatmap_png" not in body and "pip install 'facecheck[explain]'" in body["explain_error"]


def test_heatmap_request_without_captum_is_a_503_with_words(detector, without_captum):
    api = TestClient(create_app(detector, ServeSettings()), raise_server_exceptions=False)
    response = api.post("/v1/explain", files={"file": ("x.png", png(), "image/png")})
    assert response.status_code == 503
    assert response.json()["error"] == "not_available"
    assert "pip install 'facecheck[explain]'" in response.json()["message"]
    card = api.get("/v1/model").json()
    assert "facecheck[explain]" in card["explain_problem"]


def test_a_heatmap_failing_after_start_up_is_still_not_a_500(detector, monkeypatch):
    import facecheck.evaluation.explain as explain_module
    from facecheck.extras import MissingExtraError

    def broken(*args, **kwargs):
        raise MissingExtraError("this needs the optional package matplotlib, not installed")

    monkeypatch.setattr(explain_module, "explain_image", broken)
    api = TestClient(create_app(detector, ServeSettings()), raise_server_exceptions=False)
    assert api.post("/v1/explain", files={"file": ("x.png", png(), "image/png")}).status_code == 503
    body = api.post("/v1/predict?explain=true", files={"file": ("x.png", png(), "image/png")}).json()
    assert body["label"] in ("real", "fake") and "matplotlib" in body["explain_error"]


def test_docs_are_announced_only_where_they_work(monkeypatch):
    import tomllib
    from pathlib import Path

    import facecheck.serving.app as app_module

    serve_extra = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert any(r.startswith("fastapi-offline") for r in serve_extra["optional-dependencies"]["serve"])
    monkeypatch.setattr(app_module, "swagger_assets", lambda: None)
    assert app_module.docs_available() is False
