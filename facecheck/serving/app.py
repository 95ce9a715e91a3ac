"""The REST service: FastAPI app around a Detector, safe with hostile uploads and easy to monitor.

Uploads are checked before any decoding: size (bytes), type (magic bytes,
never the file name or the declared content type), pixel count (from the
header, so a decompression bomb is refused before it is expanded), and
animation. Inference runs in a bounded worker pool with a bounded queue and a
timeout, so a flood gets quick 503s instead of exhausting memory.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import io
import json
import logging
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from facecheck.data.images import to_rgb
from facecheck.errors import DataError
from facecheck.inference.predictor import Detector
from facecheck.version import __version__

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger("facecheck.serve")

# Magic numbers of the formats we accept; anything else is refused unread.
SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
)


@dataclass
class ServeSettings:
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch_files: int = 32
    workers: int = 2  # inferences at once
    queue_limit: int = 16  # requests waiting for a worker before 503
    timeout_s: float = 30.0
    api_key: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def sniff(data: bytes) -> str | None:
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_upload(data: bytes, settings: ServeSettings) -> Image.Image:
    """Validate and decode one uploaded image, or raise :class:`ApiError` with a 4xx status."""
    if not data:
        raise ApiError(400, "empty_file", "the uploaded file is empty")
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "file_too_large", f"upload is larger than {settings.max_upload_bytes} bytes")
    kind = sniff(data)
    if kind is None:
        raise ApiError(415, "unsupported_type", "not a JPEG, PNG, WebP or BMP image (judged by its content)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > settings.max_pixels:
                raise ApiError(413, "too_many_pixels", f"{width}x{height} is more than {settings.max_pixels} pixels")
            if getattr(image, "is_animated", False) or getattr(image, "n_frames", 1) > 1:
                raise ApiError(415, "animated_image", "animated images are not supported; send a still image")
            image.load()
            return to_rgb(image)
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "too_many_pixels", "image has too many pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ApiError(422, "corrupt_image", f"corrupt or truncated {kind} image ({str(exc)[:120]})") from None


def model_card(detector: Detector) -> dict[str, Any]:
    card = detector.card
    return {
        "model": card.model_name,
        "preset": card.preset,
        "id": model_id(detector),
        "backend": detector.backend,
        "threshold": detector.threshold,
        "temperature": detector.temperature,
        "uncertain_band": card.uncertain_band,
        "class_names": detector.class_names,
        "preprocess": card.to_dict()["preprocess"],
        # Folder names only: the training machine's paths are nobody's business.
        "trained_on": card.trained_on,
        "scope": card.scope,
        "epoch": card.epoch,
        "metrics_at_save": card.metrics,
        "calibration": card.notes.get("calibration"),
        "versions": card.versions | {"facecheck_serving": __version__},
    }


def model_id(detector: Detector) -> str:
    source = Path(detector.source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12] if source.is_file() else "memory"
    return f"{detector.card.model_name}-{digest}"


def create_app(detector: Detector, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    app = FastAPI(
        title="facecheck",
        version=__version__,
        description="Tell real face photographs from fake ones. Upload an image to /v1/predict.",
    )
    registry = CollectorRegistry()
    requests_total = Counter("facecheck_requests_total", "HTTP requests", ["path", "status"], registry=registry)
    errors_total = Counter("facecheck_errors_total", "Refused or failed requests", ["code"], registry=registry)
    latency = Histogram(
        "facecheck_request_seconds",
        "Request latency",
        ["path"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        registry=registry,
    )
    predictions_total = Counter("facecheck_predictions_total", "Images scored", ["label"], registry=registry)
    workers = asyncio.Semaphore(settings.workers)
    state = {"waiting": 0}
    identity = model_id(detector)
    face_crop = bool(detector.preprocess.face_crop)
    protected = ("/v1/", "/metrics")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        errors_total.labels(exc.code).inc()
        return JSONResponse({"error": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors_total.labels("bad_request").inc()
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in exc.errors()})
        message = f"invalid or missing field(s): {', '.join(fields)}; send multipart/form-data with the image as 'file'"
        return JSONResponse({"error": "bad_request", "message": message}, status_code=422)

    @app.middleware("http")
    async def guard_and_log(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        path = request.url.path
        if settings.api_key and path.startswith(protected):
            given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
            if not given or not secrets.compare_digest(given.encode(), settings.api_key.encode()):
                response: Response = JSONResponse(
                    {"error": "unauthorized", "message": "missing or wrong API key (X-API-Key header)"},
                    status_code=401,
                )
                errors_total.labels("unauthorized").inc()
                return _finish(request, response, started)
        declared = request.headers.get("content-length")
        limit = settings.max_upload_bytes * (settings.max_batch_files if path.endswith("/batch") else 1) + 64 * 1024
        if declared and declared.isdigit() and int(declared) > limit:
            errors_total.labels("request_too_large").inc()
            response = JSONResponse(
                {"error": "request_too_large", "message": f"request is larger than {limit} bytes"}, status_code=413
            )
            return _finish(request, response, started)
        response = await call_next(request)
        return _finish(request, response, started)

    def _finish(request: Request, response: Response, started: float) -> Response:
        elapsed = time.perf_counter() - started
        route = request.url.path if request.url.path in known_paths else "other"
        requests_total.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(elapsed)
        logger.info(
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "latency_ms": round(elapsed * 1000, 2),
                    "client": request.client.host if request.client else None,
                    "bytes_in": int(request.headers.get("content-length") or 0),
                }
            )
        )
        return response

    async def run_inference(function: Any, *args: Any) -> Any:
        if workers.locked() and state["waiting"] >= settings.queue_limit:
            raise ApiError(503, "busy", "too many requests waiting; retry shortly")
        state["waiting"] += 1
        try:
            try:
                await asyncio.wait_for(workers.acquire(), timeout=settings.timeout_s)
            except TimeoutError:
                raise ApiError(503, "busy", "no worker became free in time; retry shortly") from None
        finally:
            state["waiting"] -= 1
        # A thread cannot be cancelled: its worker slot is freed when it really ends, not at the timeout,
        # so timed-out requests still count against the pool.
        task = asyncio.ensure_future(asyncio.to_thread(function, *args))
        task.add_done_callback(lambda _task: workers.release())
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=settings.timeout_s)
        except TimeoutError:
            raise ApiError(504, "timeout", f"inference took longer than {settings.timeout_s:g} s") from None

    def score(images: list[Image.Image], explain: bool) -> list[dict[str, Any]]:
        results = []
        predictions = detector.predict(images)
        for image, prediction in zip(images, predictions, strict=True):
            if prediction.error is not None:
                results.append({"error": "unprocessable", "message": prediction.error})
                continue
            entry: dict[str, Any] = {"p_fake": prediction.p_fake, "label": prediction.label}
            if face_crop:
                from facecheck.data.faces import detect_faces

                entry["faces"] = [
                    {"box": [round(v, 1) for v in face.box], "probability": face.probability}
                    for face in detect_faces(image)
                ]
            if explain and detector.model is not None:
                entry["heatmap_png"] = _heatmap_data_uri(detector, image)
            predictions_total.labels(prediction.label).inc()
            results.append(entry)
        return results

    async def read_limited(upload: UploadFile) -> bytes:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise ApiError(413, "file_too_large", f"upload is larger than {settings.max_upload_bytes} bytes")
        return data

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": identity}

    @app.get("/v1/model")
    async def card() -> dict[str, Any]:
        return model_card(detector)

    @app.post("/v1/predict")
    async def predict(file: Annotated[UploadFile, File()], explain: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        image = decode_upload(await read_limited(file), settings)
        result = (await run_inference(score, [image], explain))[0]
        if "error" in result:
            raise ApiError(422, result["error"], result["message"])
        return result | {"threshold": detector.threshold, "model": identity, "latency_ms": _ms(started)}

    @app.post("/v1/predict/batch")
    async def predict_batch(files: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
        started = time.perf_counter()
        if len(files) > settings.max_batch_files:
            raise ApiError(413, "too_many_files", f"at most {settings.max_batch_files} files per batch")
        entries: list[dict[str, Any]] = []
        images, slots = [], []
        for index, upload in enumerate(files):
            try:
                images.append(decode_upload(await read_limited(upload), settings))
                slots.append(index)
                entries.append({})
            except ApiError as exc:
                errors_total.labels(exc.code).inc()
                entries.append({"error": exc.code, "message": exc.message})
        if images:
            for index, result in zip(slots, await run_inference(score, images, False), strict=True):
                entries[index] = result
        for upload, entry in zip(files, entries, strict=True):
            entry["filename"] = upload.filename
        return {"results": entries, "threshold": detector.threshold, "model": identity, "latency_ms": _ms(started)}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    known_paths = {
        "/",
        "/health",
        "/v1/model",
        "/v1/predict",
        "/v1/predict/batch",
        "/metrics",
        "/docs",
        "/openapi.json",
    }
    return app


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


_explain_lock = threading.Lock()
_explain_models: dict[int, Any] = {}


def _heatmap_data_uri(detector: Detector, image: Image.Image) -> str:
    """Grad-CAM overlay as a data URI, computed on a private copy of the model.

    Grad-CAM hooks the model's layers; a copy keeps those hooks away from
    predictions running in other worker threads.
    """
    from facecheck.data.presets import source_and_resize
    from facecheck.evaluation.explain import gradcam, overlay

    with _explain_lock:
        model = _explain_models.setdefault(id(detector), copy.deepcopy(detector.model))
        try:
            batch = detector.single_view_transform(image).unsqueeze(0)
            heatmap = gradcam(model, batch)[0]
            view = source_and_resize(detector.preprocess)(image)
        except DataError:
            return ""
    buffer = io.BytesIO()
    overlay(view, heatmap).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
