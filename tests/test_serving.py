"""The REST service: predictions, model card, metrics, and every kind of hostile upload."""

import io
import json
import re
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
    assert body.get("heatmap_png", "").startswith("data:image/png;base64,"), body


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
    assert api.get("/metrics").json()["error"] == "unauthorized"
    # the key is part of the API description, so /docs shows where to put it
    schemes = api.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes["APIKeyHeader"].items()
    assert api.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["security"]


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


def test_same_input_rules_as_the_cli(detector, tmp_path: Path):
    # animated: the first frame is scored, as `facecheck predict` does
    animated = tmp_path / "animated.png"
    animated.write_bytes(_animated_gif_as_png_name())
    api = client(detector)
    served = api.post("/v1/predict", files={"file": ("a.png", animated.read_bytes(), "image/png")})
    assert served.status_code == 200
    assert served.json()["p_fake"] == pytest.approx(detector.predict([animated])[0].p_fake, abs=1e-6)
    # under the model's minimum side: refused by both, with the same words
    assert detector.min_size == 16
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(png((12, 40)))
    refused = api.post("/v1/predict", files={"file": ("tiny.png", tiny.read_bytes(), "image/png")})
    assert refused.status_code == 422 and refused.json()["error"] == "image_too_small"
    assert "minimum 16px" in refused.json()["message"] and "minimum 16px" in detector.predict([tiny])[0].error


def test_every_error_has_the_same_shape(detector):
    api = client(detector, max_upload_bytes=2000, api_key="k")
    key = {"X-API-Key": "k"}
    answers = [
        api.get("/nope"),  # 404
        api.get("/v1/predict", headers=key),  # 405
        api.post("/v1/predict", headers=key),  # validation error
        api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")}),  # 401
        api.post("/v1/predict", headers=key, files={"file": ("x.png", png((200, 200)), "image/png")}),  # 413
        api.post("/v1/predict", headers=key, files={"file": ("x.txt", b"text", "text/plain")}),  # 415
    ]
    assert [a.status_code for a in answers] == [404, 405, 422, 401, 413, 415]
    for answer in answers:
        body = answer.json()
        assert set(body) == {"error", "message"} and body["error"] and body["message"], body
    assert answers[0].json()["error"] == "not_found" and answers[1].json()["error"] == "method_not_allowed"


def test_a_failure_inside_is_a_500_in_the_same_shape(detector, monkeypatch):
    def broken(images, batch_size=32):
        raise RuntimeError("boom at /some/server/path")

    monkeypatch.setattr(detector, "predict", broken)
    api = TestClient(create_app(detector, ServeSettings()), raise_server_exceptions=False)
    answer = api.post("/v1/predict", files={"file": ("x.png", png(), "image/png")})
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_error" and "/some/server" not in answer.text


def test_chunked_upload_is_counted_as_it_streams(detector):
    # (that reading stops at the limit, on a real socket: tests/test_service_limits.py)
    chunks = (b"\0" * 65536 for _ in range(100))
    api = client(detector, max_upload_bytes=100_000)
    response = api.post("/v1/predict", content=chunks, headers={"content-type": "multipart/form-data; boundary=x"})
    assert "content-length" not in response.request.headers  # chunked: no declared size to check
    assert response.status_code == 413 and response.json()["error"] == "request_too_large"
    assert response.headers["connection"] == "close"


def test_model_card_names_no_place_on_disk(tmp_path: Path):
    config = quick_config("seed-cnn", tmp_path / "private" / "faces")
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    card = client(Detector.load(tmp_path / "m.pt")).get("/v1/model").json()
    assert card["training_data"] == "faces"
    assert str(tmp_path) not in json.dumps(card) and card["model"] == "seed_cnn"


def test_docs_load_nothing_from_another_site(detector, monkeypatch, tmp_path: Path):
    import facecheck.serving.app as app_module

    (tmp_path / "swagger-ui-bundle.js").write_text("window.SwaggerUIBundle = function () {};")
    (tmp_path / "swagger-ui.css").write_text("body {}")
    monkeypatch.setattr(app_module, "swagger_assets", lambda: tmp_path)
    api = client(detector)
    page = api.get("/docs").text
    assert "/docs/swagger-ui-bundle.js" in page and "/openapi.json" in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "the docs page links to another site"
    assert api.get("/docs/swagger-ui-bundle.js").text.startswith("window.SwaggerUIBundle")
    assert api.get("/docs/swagger-ui.css").status_code == 200
    assert api.get("/docs/secret.txt").status_code == 404
    assert api.get("/redoc").status_code == 404  # ReDoc's script would come from a CDN too

    monkeypatch.setattr(app_module, "swagger_assets", lambda: None)
    note = client(detector).get("/docs").text
    assert "fastapi-offline" in note and "/openapi.json" in note and "<script" not in note


def test_explanations_run_side_by_side_on_private_model_copies(detector, monkeypatch):
    import facecheck.evaluation.explain as explain_module

    both_inside = threading.Barrier(2, timeout=10)  # broken (an error) if one explanation waits for the other
    used = []
    original = explain_module.explain_image

    def explain_image(detector_, image, model=None, face=None):
        used.append(model)
        both_inside.wait()
        return original(detector_, image, model)

    monkeypatch.setattr(explain_module, "explain_image", explain_image)
    results = []
    with client(detector, workers=2) as api:

        def ask():
            results.append(api.post("/v1/explain", files={"file": ("x.jpg", jpeg(), "image/jpeg")}))

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert [r.status_code for r in results] == [200, 200]
    assert all(r.json()["heatmap_png"].startswith("data:image/png;base64,") for r in results)
    assert used[0] is not used[1] and detector.model not in used


def test_page_asks_for_the_heatmap_only_after_the_verdict():
    script = (Path(__file__).parents[1] / "facecheck" / "serving" / "static" / "index.html").read_text()
    assert "explain=true" not in script  # the verdict request does not wait for Grad-CAM
    send = script[script.index("async function send(") : script.index("async function post(")]
    assert send.index("show(file, body)") < send.index("explain(file")
