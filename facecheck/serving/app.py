"""The REST service: FastAPI app around a Detector, safe with hostile uploads and easy to monitor.

Uploads are checked before any decoding: size (bytes, counted as they stream
in), type (magic bytes, never the file name or the declared content type) and
pixel count (from the header, so a decompression bomb is refused before it is
expanded). Decoding and inference run in bounded worker pools with bounded
queues and timeouts, off the event loop, so a flood gets quick 503s and
``/health`` keeps answering while large images are decoded.

The parts: ``errors`` (one error format), ``uploads`` (checking and decoding),
``pool`` (worker pools, model copies for Grad-CAM), ``middleware`` (limits,
metrics, log line), ``server`` (uvicorn with connection timeouts).
"""

from __future__ import annotations

import base64
import io
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Security, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers

from facecheck.card import render_card
from facecheck.errors import DataError
from facecheck.extras import MissingExtraError, require_extra
from facecheck.inference.predictor import MAX_FACES, SHIPPED_PREFIX, Detector
from facecheck.provenance import read_provenance
from facecheck.serving.errors import ApiError, install_error_handlers
from facecheck.serving.middleware import RequestGuard, ServiceMetrics
from facecheck.serving.pool import ModelCopies, WorkerPool
from facecheck.serving.uploads import decode_upload, header_pixels
from facecheck.version import __version__

STATIC = Path(__file__).parent / "static"
PROVENANCE = "facecheck.provenance"  # key in a decoded upload's info: facecheck.provenance.Provenance
PROTECTED = ("/v1/", "/metrics")
# Paths with their own label in the metrics (anything else counts as "other", so scans cannot grow them).
KNOWN_PATHS = {
    "/", "/health", "/v1/model", "/v1/predict", "/v1/predict/batch", "/v1/explain",
    "/metrics", "/docs", "/openapi.json",
}  # fmt: skip
# Declared as FastAPI security schemes so that /docs and the OpenAPI schema show where the key goes.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="the key the server was started with")
BEARER = HTTPBearer(auto_error=False, description="the same key as a bearer token")


@dataclass
class ServeSettings:
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch_files: int = 32
    # Decoded pixels (width x height, from the headers, before decoding) of one request, and of all requests
    # being decoded or scored at once; RGB takes 3 bytes a pixel, plus the model's own copies.
    max_request_pixels: int = 100_000_000
    max_pixels_in_flight: int = 200_000_000
    shutdown_timeout_s: float = 5.0  # on SIGTERM, requests still open after this are cut off
    workers: int = 2  # inferences at once
    decode_workers: int = 2  # uploads decoded at once
    queue_limit: int = 16  # requests waiting for a worker before 503
    timeout_s: float = 30.0
    api_key: str | None = None
    head_timeout_s: float = 10.0  # request line and headers must arrive within this
    body_timeout_s: float = 60.0  # the whole body must arrive within this
    keep_alive_s: int = 5  # idle keep-alive connections are closed after this
    max_connections: int = 200  # open connections and requests in flight; past this, 503 at once

    def body_limit(self, path: str) -> int:
        files = self.max_batch_files if path.endswith("/batch") else 1
        return self.max_upload_bytes * files + 64 * 1024  # + room for the multipart framing


def model_info(detector: Detector) -> dict[str, Any]:
    """What ``/v1/model`` shows: the model card, as the web page and clients read it.

    Nothing here names a place on the server's disk: training sources are given by their folder names only.
    """
    card = detector.card
    digest = detector.weights_sha256
    name = detector.source.removeprefix(SHIPPED_PREFIX) if detector.source.startswith(SHIPPED_PREFIX) else card.preset
    return _without_paths(
        {
            "model": card.model_name,
            "preset": card.preset,
            "id": f"{card.model_name}-{(digest or 'in-memory')[:12]}",
            "weights_sha256": digest,
            # The same text as `facecheck models --card`; the page shows it as it is.
            "card_text": render_card(card, name, digest),
            "backend": detector.backend,
            "precision": detector.precision,
            "threshold": detector.threshold,
            "temperature": detector.temperature,
            "uncertain_band": card.uncertain_band,
            "class_names": detector.class_names,
            "preprocess": card.to_dict()["preprocess"],
            "trained_on": card.trained_on,
            "training_data": ", ".join(card.trained_on),
            "scope": {k: v for k, v in card.scope.items() if k != "canaries"},
            # The card's promise as kept here: false, with the reason, when the face detector is not installed.
            "face_check": detector.face_check and detector.face_check_problem is None,
            "face_check_problem": detector.face_check_problem,
            "explain_problem": explain_problem(detector),
            "epoch": card.epoch,
            "metrics_at_save": card.metrics,
            "calibration": card.notes.get("calibration"),
            "versions": card.versions | {"facecheck_serving": __version__},
        }
    )


def _without_paths(value: Any) -> Any:
    """``value`` with every absolute path string cut to its last part (a safety net for nested entries)."""
    if isinstance(value, dict):
        return {key: _without_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_paths(item) for item in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or (len(value) > 2 and value[1:3] == ":\\")):
        return Path(value.replace("\\", "/")).name
    return value


def swagger_assets() -> Path | None:
    """Folder with ``swagger-ui-bundle.js`` and ``swagger-ui.css`` from an installed package, or None.

    FastAPI's default ``/docs`` loads these from a CDN, which is blank on a
    machine without internet; the ``fastapi-offline`` package ships them.
    """
    try:
        folder = Path(str(resources.files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if (folder / "swagger-ui-bundle.js").is_file() and (folder / "swagger-ui.css").is_file() else None


def explain_problem(detector: Detector) -> str | None:
    """Why this server cannot draw Grad-CAM heatmaps (None: it can)."""
    if detector.model is None:
        return "no heatmap: this model has no PyTorch weights (an ONNX file), and Grad-CAM needs them"
    try:
        require_extra("explain")
    except MissingExtraError as exc:
        return f"no heatmap: {exc}"
    return None


def docs_available() -> bool:
    """Whether ``/docs`` shows the interactive API docs here (else it says how to get them)."""
    return swagger_assets() is not None


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _decode_with_provenance(data: bytes, *limits: int) -> Image.Image:
    """:func:`decode_upload`, with what the file declares about itself kept in the image's info (never fails it)."""
    image = decode_upload(data, *limits)
    image.info[PROVENANCE] = read_provenance(data)
    return image


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


class Service:
    """The work behind the handlers: decoding and scoring in bounded pools, Grad-CAM on private model copies."""

    def __init__(self, detector: Detector, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.detector, self.settings, self.metrics = detector, settings, metrics
        self.info = model_info(detector)
        self.identity: str = self.info["id"]
        self.face_crop = bool(detector.preprocess.face_crop)
        self.decoding = WorkerPool("decoding", settings.decode_workers, settings.queue_limit, settings.timeout_s)
        self.inference = WorkerPool("inference", settings.workers, settings.queue_limit, settings.timeout_s)
        # Explanations run inside the inference pool: one copy per worker is never waited for.
        self.explainers = ModelCopies(detector.model, settings.workers) if detector.model is not None else None
        # Why no heatmap can be drawn here (None: it can): said in words, never a 500.
        self.explain_problem = explain_problem(detector)
        self.budget_lock = threading.Lock()
        self.pixels_in_flight = 0

    async def read(self, upload: UploadFile) -> Image.Image:
        return await self.decode(await self.receive(upload))

    async def receive(self, upload: UploadFile) -> bytes:
        return await upload.read(self.settings.max_upload_bytes + 1)

    async def decode(self, data: bytes) -> Image.Image:
        limits = self.settings.max_upload_bytes, self.settings.max_pixels, self.detector.min_size
        return await self.decoding.run(_decode_with_provenance, data, *limits)

    @contextmanager
    def pixel_budget(self, uploads: list[bytes]) -> Iterator[None]:
        """Reserve the decoded size of ``uploads`` (from their headers) before any is decoded, or refuse:
        413 where one request is past its own limit, 503 while others hold the server's budget."""
        wanted = sum(min(header_pixels(data), self.settings.max_pixels) for data in uploads)
        if wanted > self.settings.max_request_pixels:
            raise ApiError(
                413, "too_many_pixels",
                f"the images of one request may hold at most {self.settings.max_request_pixels:,} pixels in all "
                f"(these hold {wanted:,}): send fewer or smaller images",
            )  # fmt: skip
        with self.budget_lock:
            if self.pixels_in_flight + wanted > self.settings.max_pixels_in_flight:
                raise ApiError(503, "busy", "too many large images are being scored; retry shortly")
            self.pixels_in_flight += wanted
        try:
            yield
        finally:
            with self.budget_lock:
                self.pixels_in_flight -= wanted

    def score(self, images: list[Image.Image], explain: bool) -> list[dict[str, Any]]:
        results = []
        for image, prediction in zip(images, self.detector.predict(images), strict=True):
            if prediction.error is not None:
                results.append({"error": "unprocessable", "message": prediction.error})
                continue
            entry: dict[str, Any] = {"p_fake": prediction.p_fake, "label": prediction.label}
            if prediction.notice:
                entry["notice"] = prediction.notice
            if PROVENANCE in image.info:  # beside the verdict, never part of it
                entry["provenance"] = image.info[PROVENANCE].to_dict()
            if prediction.faces is not None:  # a model that judges faces: each face's box and verdict
                entry["faces"] = [asdict(face) for face in prediction.faces]
                entry["decided_by"] = prediction.decided_by
            if explain:  # the verdict stands whatever happens to its explanation
                try:
                    entry["heatmap_png"] = self.heatmap(image)
                except ApiError as exc:
                    entry["explain_error"] = exc.message
            self.metrics.predictions.labels(prediction.label).inc()
            results.append(entry)
        return results

    def heatmap(self, image: Image.Image, face: int | None = None) -> str:
        """Grad-CAM overlay as a data URI ("" where the preprocessing finds nothing to explain).

        Raises :class:`ApiError` (503) when no heatmap can be drawn here, with the reason.
        """
        from facecheck.evaluation.explain import explain_image

        if self.explain_problem is not None or self.explainers is None:
            raise ApiError(503, "not_available", self.explain_problem or "no heatmap for this model")
        with self.explainers.borrow() as model:
            try:
                return _data_uri(explain_image(self.detector, image, model, face))
            except DataError as exc:
                if face is not None:  # the face asked for is not in this picture
                    raise ApiError(422, "no_such_face", str(exc)) from None
                return ""
            except MissingExtraError as exc:  # a package went missing after start-up
                raise ApiError(503, "not_available", f"no heatmap: {exc}") from None

    def close(self) -> None:
        self.decoding.close()
        self.inference.close()


def create_app(detector: Detector, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    metrics = ServiceMetrics()
    service = Service(detector, settings, metrics)
    assets = swagger_assets()
    app = FastAPI(
        title="facecheck",
        version=__version__,
        description="Tell real face photographs from fake ones. Upload an image to /v1/predict.",
        docs_url=None,  # served below from local files, never from a CDN
        redoc_url=None,
        lifespan=_closing(service),
    )
    app.state.service = service
    install_error_handlers(app, metrics.count_error)
    key_matches = _key_check(settings.api_key)

    def authorised(headers: Headers, path: str) -> bool:
        if not settings.api_key or not path.startswith(PROTECTED):
            return True
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        return key_matches(headers.get("x-api-key")) or key_matches(bearer)

    app.add_middleware(
        RequestGuard,
        metrics=metrics,
        body_limit=settings.body_limit,
        body_timeout_s=settings.body_timeout_s,
        authorised=authorised,
        known_paths=KNOWN_PATHS,
    )
    require_key = _key_dependency(key_matches) if settings.api_key else None
    guarded = [Security(require_key)] if require_key else []
    app.include_router(_routes(service), prefix="/v1", dependencies=guarded)
    _add_pages(app, service, metrics, assets, guarded)
    return app


def _closing(service: Service) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # the worker threads end with the server

    return lifespan


def _key_check(api_key: str | None) -> Any:
    def key_matches(given: str | None) -> bool:
        return bool(api_key and given and secrets.compare_digest(given.encode(), api_key.encode()))

    return key_matches


def _key_dependency(key_matches: Any) -> Any:
    async def require_key(
        key: Annotated[str | None, Security(API_KEY_HEADER)],
        token: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> None:
        if not (key_matches(key) or key_matches(token.credentials if token else None)):
            raise ApiError(401, "unauthorized", "missing or wrong API key (X-API-Key header)")

    return require_key


def _routes(service: Service) -> APIRouter:
    router = APIRouter()
    settings, detector = service.settings, service.detector

    @router.get("/model")
    async def card() -> dict[str, Any]:
        return service.info

    @router.post("/predict")
    async def predict(file: Annotated[UploadFile, File()], explain: bool = False) -> dict[str, Any]:
        started = time.perf_counter()
        data = await service.receive(file)
        with service.pixel_budget([data]):
            image = await service.decode(data)
            result = (await service.inference.run(service.score, [image], explain))[0]
        if "error" in result:
            raise ApiError(422, result["error"], result["message"])
        band = detector.card.uncertain_band  # drawn on the page's probability bar
        return result | {
            "threshold": detector.threshold,
            "uncertain_band": list(band) if band else None,
            "model": service.identity,
            "latency_ms": _ms(started),
        }

    @router.post("/explain")
    async def explain(file: Annotated[UploadFile, File()], face: int | None = None) -> dict[str, Any]:
        """Grad-CAM overlay only: the web page asks for it after it has shown the verdict. ``face``: the index
        of one face (as in the prediction's ``faces``) for a model that judges faces."""
        started = time.perf_counter()
        if service.explainers is None:
            raise ApiError(501, "not_available", "this model has no PyTorch weights (an ONNX file): no Grad-CAM")
        if service.explain_problem is not None:
            raise ApiError(503, "not_available", service.explain_problem)
        if face is not None and not detector.preprocess.face_crop:
            raise ApiError(422, "no_such_face", "this model judges whole pictures: leave face= out")
        if face is not None and not 0 <= face < MAX_FACES:
            raise ApiError(422, "no_such_face", f"face={face}: give the index of one of the prediction's faces")
        data = await service.receive(file)
        with service.pixel_budget([data]):
            image = await service.decode(data)
            heatmap = await service.inference.run(service.heatmap, image, face)
        return {"heatmap_png": heatmap, "model": service.identity, "latency_ms": _ms(started)}

    @router.post("/predict/batch")
    async def predict_batch(files: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
        started = time.perf_counter()
        if len(files) > settings.max_batch_files:
            raise ApiError(413, "too_many_files", f"at most {settings.max_batch_files} files per batch")
        entries: list[dict[str, Any]] = []
        images, slots = [], []
        uploads = [await service.receive(upload) for upload in files]
        with service.pixel_budget(uploads):  # decided from the headers, before anything is decoded
            for index, data in enumerate(uploads):
                try:
                    images.append(await service.decode(data))
                    slots.append(index)
                    entries.append({})
                except ApiError as exc:
                    if exc.status >= 500:  # busy or timed out: the whole batch is refused, not one file
                        raise
                    service.metrics.count_error(exc.code)
                    entries.append({"error": exc.code, "message": exc.message})
            if images:
                scored = await service.inference.run(service.score, images, False)
                for index, result in zip(slots, scored, strict=True):
                    entries[index] = result
        for upload, entry in zip(files, entries, strict=True):
            entry["filename"] = upload.filename
        return {"results": entries, "threshold": detector.threshold, "model": service.identity} | {
            "latency_ms": _ms(started)
        }

    return router


def _add_pages(
    app: FastAPI, service: Service, metrics: ServiceMetrics, assets: Path | None, guarded: list[Any]
) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.identity}

    @app.get("/metrics", include_in_schema=False, dependencies=guarded)
    async def metrics_page() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if assets is None:

        @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
        async def docs_note() -> HTMLResponse:
            return HTMLResponse(
                "<!doctype html><title>facecheck API</title><p>Interactive API docs are off: their Swagger UI "
                "files would come from a CDN, and this server loads nothing from the internet. Install the "
                "<code>fastapi-offline</code> package (it ships those files) to have them here. The API schema "
                'is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )

        return

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="facecheck API",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url="data:,",  # no favicon request to another site
        )

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in ("swagger-ui-bundle.js", "swagger-ui.css"):
            raise ApiError(404, "not_found", f"no such file: {name}")
        return FileResponse(assets / name)
