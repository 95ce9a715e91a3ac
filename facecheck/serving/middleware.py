"""What every request goes through before and after its handler: limits, timeouts, metrics and a log line.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so that it sees the
request body as it streams in: the byte limit holds for chunked uploads that
declare no length, and a body that trickles in is cut off at a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facecheck.serving.errors import error_response

logger = logging.getLogger("facecheck.serve")
CLOSE = {"connection": "close"}  # the rest of a refused body is never read: the connection cannot be reused


@dataclass
class ServiceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("facecheck_requests_total", "HTTP requests", ["path", "status"], registry=self.registry)
        self.errors = Counter("facecheck_errors_total", "Refused or failed requests", ["code"], registry=self.registry)
        self.latency = Histogram(
            "facecheck_request_seconds",
            "Request latency",
            ["path"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.predictions = Counter("facecheck_predictions_total", "Images scored", ["label"], registry=self.registry)

    def count_error(self, code: str) -> None:
        self.errors.labels(code).inc()


class BodyRefused(HTTPException):
    """Raised from ``receive`` while the body streams in; rendered like any error, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, headers=CLOSE)


class RequestGuard:
    """Refuse what can be refused before the body is read, bound the body as it streams, log every request.

    ``body_limit(path)``: most bytes a request to ``path`` may send.
    ``authorised(headers, path)``: whether an upload to ``path`` may be read at all (False: 401 before the
    body is read; the routes check the key again for every request, uploads or not).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        body_limit: Callable[[str], int],
        body_timeout_s: float,
        authorised: Callable[[Headers, str], bool],
        known_paths: set[str],
    ) -> None:
        self.app, self.metrics, self.body_limit, self.body_timeout_s = app, metrics, body_limit, body_timeout_s
        self.authorised, self.known_paths = authorised, known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        path: str = scope["path"]
        limit = self.body_limit(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        state = {"status": 500, "bytes": 0, "body_done": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        async def limited_receive() -> Message:
            if state["body_done"]:
                return await receive()  # e.g. a handler listening for the client going away
            try:
                message = await asyncio.wait_for(receive(), timeout=max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise BodyRefused(408, f"the request body did not arrive within {self.body_timeout_s:g} s") from None
            if message["type"] != "http.request":
                state["body_done"] = True
                return message
            state["bytes"] += len(message.get("body", b""))
            state["body_done"] = not message.get("more_body", False)
            if state["bytes"] > limit:  # counted as it streams: chunked bodies declare no length
                raise BodyRefused(413, f"request is larger than {limit} bytes")
            return message

        try:
            declared = headers.get("content-length", "")
            if scope["method"] == "POST" and not self.authorised(headers, path):
                self.metrics.count_error("unauthorized")
                response = error_response(401, "unauthorized", "missing or wrong API key (X-API-Key header)", CLOSE)
                await response(scope, receive, tracked_send)
            elif declared.isdigit() and int(declared) > limit:
                self.metrics.count_error("request_too_large")
                response = error_response(413, "request_too_large", f"request is larger than {limit} bytes", CLOSE)
                await response(scope, receive, tracked_send)
            else:
                await self.app(scope, limited_receive, tracked_send)
        finally:
            self._record(scope, path, state["status"], state["bytes"], time.perf_counter() - started)

    def _record(self, scope: Scope, path: str, status: int, bytes_in: int, elapsed: float) -> None:
        route = path if path in self.known_paths else "other"
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(elapsed)
        client = scope.get("client")
        logger.info(
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "latency_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None,
                    "bytes_in": bytes_in,
                }
            )
        )
