"""The REST service: predictions, model card, metrics, and every kind of hostile upload."""

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

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


def png(size=(64, 64), seed=0, mode="RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def client(detector, **settings) -> TestClient:
    return TestClient(create_app(detector, ServeSettings(**settings)))


def test_predict_health_card_metrics_docs_and_page(detector):
    api = client(detector)
    assert api.get("/health").json()["status"] == "ok"
    response = api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")})
    assert response.status_code == 200
    body = response.json()
    assert 0 <= body["p_fake"] <= 1 and body["label"] in ("real", "fake")
    assert body["threshold"] == 0.5 and body["model"].startswith("seed_cnn-") and body["latency_ms"] > 0
    expected = detector.predict([Image.open(io.BytesIO(png())).convert("RGB")])[0].p_fake
    assert body["p_fake"] == pytest.approx(expected, abs=1e-6)
    card = api.get("/v1/model").json()
    assert card["model"] == "seed_cnn" and card["threshold"] == 0.5 and "torch" in card["versions"]
    metrics = api.get("/metrics").text
    assert 'facecheck_requests_total{path="/v1/predict",status="200"} 1.0' in metrics
    assert "facecheck_request_seconds_bucket" in metrics
    assert api.get("/openapi.json").json()["paths"]["/v1/predict"]
    assert "drag" in api.get("/").text.lower()


def test_explain_returns_a_heatmap(detector):
    body = client(detector).post("/v1/predict?explain=true", files={"file": ("x.jpg", jpeg(), "image/jpeg")}).json()
    assert body["heatmap_png"].startswith("data:image/png;base64,")


def test_batch_reports_each_file(detector):
    files = [("files", ("a.png", png(), "image/png")), ("files", ("b.txt", b"hello", "text/plain")),
             ("files", ("c.jpg", jpeg(), "image/jpeg"))]  # fmt: skip
    body = client(detector).post("/v1/predict/batch", files=files).json()
    assert [r["filename"] for r in body["results"]] == ["a.png", "b.txt", "c.jpg"]
    assert "p_fake" in body["results"][0] and body["results"][1]["error"] == "unsupported_type"
    assert "p_fake" in body["results"][2]


def _animated_gif_as_png_name() -> bytes:
    frames = [Image.new("RGB", (20, 20), (i * 80, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])  # APNG
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, "PNG")  # 81 million pixels, a small file
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"just some text, named .jpg", 415, "unsupported_type"),
        (b"GIF89a" + b"\x00" * 40, 415, "unsupported_type"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 64, 415, "unsupported_type"),
        (jpeg()[:200], 422, "corrupt_image"),
        (png()[:100], 422, "corrupt_image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, 422, "corrupt_image"),
        (_animated_gif_as_png_name(), 415, "animated_image"),
        (_bomb(), 413, "too_many_pixels"),
    ],
)
def test_hostile_uploads_get_clear_4xx_and_the_service_keeps_serving(detector, payload, status, code):
    api = client(detector)
    response = api.post("/v1/predict", files={"file": ("photo.jpg", payload, "image/jpeg")})
    assert response.status_code == status
    assert response.json()["error"] == code and response.json()["message"]
    assert api.post("/v1/predict", files={"file": ("ok.png", png(), "image/png")}).status_code == 200


def test_wrong_field_no_body_and_size_limits(detector):
    api = client(detector, max_upload_bytes=2000)
    assert api.post("/v1/predict", files={"image": ("x.png", png(), "image/png")}).status_code == 422
    assert "multipart" in api.post("/v1/predict").json()["message"]
    big = api.post("/v1/predict", files={"file": ("x.png", png((200, 200)), "image/png")})
    assert big.status_code == 413 and big.json()["error"] in ("file_too_large", "request_too_large")


def test_api_key(detector):
    api = client(detector, api_key="s3cret")
    assert api.get("/health").status_code == 200  # health stays open for load balancers
    assert api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")}).status_code == 401
    assert api.get("/v1/model", headers={"X-API-Key": "wrong"}).status_code == 401
    assert api.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert api.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_flood_gets_503_and_slow_inference_504(detector, monkeypatch):
    gate = threading.Event()
    original = detector.predict

    def slow(images, batch_size=32):
        gate.wait(5)
        return original(images, batch_size)

    monkeypatch.setattr(detector, "predict", slow)
    results = {}
    with client(detector, workers=1, queue_limit=0, timeout_s=2) as api:

        def first():
            results["first"] = api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")}).status_code

        worker = threading.Thread(target=first)
        worker.start()
        time.sleep(0.5)
        second = api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")})
        assert second.status_code == 503 and second.json()["error"] == "busy"
        worker.join()
        assert results["first"] == 504  # the gate held it past the 2 s timeout
        gate.set()
        monkeypatch.setattr(detector, "predict", original)
        time.sleep(0.2)  # the timed-out thread finishes and frees its worker
        assert api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")}).status_code == 200


def test_structured_log_line_per_request(detector, caplog):
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="facecheck.serve"):
        client(detector).get("/health")
    line = json.loads(caplog.records[-1].message)
    assert line["path"] == "/health" and line["status"] == 200 and "latency_ms" in line


def test_onnx_model_is_served_the_same(detector, tmp_path: Path):
    from facecheck.inference.export import export_onnx

    onnx_path = export_onnx(detector.model, detector.preprocess, tmp_path / "m.onnx", card=detector.card)
    onnx_api = client(Detector.load(onnx_path))
    torch_api = client(detector)
    a = onnx_api.post("/v1/predict", files={"file": ("x.png", png(seed=3), "image/png")}).json()
    b = torch_api.post("/v1/predict", files={"file": ("x.png", png(seed=3), "image/png")}).json()
    assert a["p_fake"] == pytest.approx(b["p_fake"], abs=1e-5)
