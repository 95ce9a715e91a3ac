"""Running the app under uvicorn with connection limits, so slow or idle clients cannot hold the server.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and caps
header size (h11's incomplete-event limit) but gives a client all the time it
wants to send its request head; ``head_timeout_s`` closes a connection whose
head has not fully arrived in time. Slow bodies are cut off by the app's
``RequestGuard`` (``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from PIL import Image
from uvicorn.protocols.http.h11_impl import H11Protocol

from facecheck.data.transforms import input_size
from facecheck.errors import FacecheckError
from facecheck.inference.predictor import Detector
from facecheck.serving.app import ServeSettings


def guarded_h11(head_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request head takes longer than ``head_timeout_s``."""

    class GuardedH11Protocol(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._wait_for_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._wait_for_head()  # the next request on this keep-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            super().connection_lost(exc)

        def _wait_for_head(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.head_timer = self.loop.call_later(head_timeout_s, self._head_deadline)

        def _head_deadline(self) -> None:
            # A request whose head arrived is being handled (its body has the app's own deadline);
            # otherwise the client has sent nothing, or only part of a head, for too long.
            handling = self.cycle is not None and not self.cycle.response_complete
            if not handling and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(app: Any, host: str, port: int, settings: ServeSettings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_h11(settings.head_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,  # past this, uvicorn answers 503 at once
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers
        timeout_graceful_shutdown=settings.shutdown_timeout_s,  # a slow client cannot hold up a SIGTERM
        **({"log_level": "warning", "access_log": False} | options),
    )


def warm_up(detector: Detector) -> float:
    """One prediction on a plain grey image, so that the first request does not pay for lazy set-up (thread
    pools, the ONNX Runtime session, the face detector); returns the seconds it took."""
    size = input_size(detector.preprocess)
    started = time.perf_counter()
    detector.predict([Image.new("RGB", (size, size), (128, 128, 128))])
    return time.perf_counter() - started


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling ``on_ready`` once it listens (so "ready" is said only when it is true)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, taken before the model loads: a port in use or a host that is not
    this machine's is one line (exit 2) at once, not a traceback after the model has loaded."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise FacecheckError(f"--host {host}: not a host name or address this machine can resolve ({exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = "; another server uses it: stop it or choose another --port" if exc.errno == errno.EADDRINUSE else ""
        raise FacecheckError(f"cannot listen on {base_url(host, port)}: {reason}{hint}") from None
    sock.set_inheritable(True)
    return sock


def serve(
    app: Any,
    host: str,
    port: int,
    settings: ServeSettings,
    on_ready: Callable[[], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Run the app until stopped, on ``sock`` (from :func:`listen`) when given, else binding ``host:port``."""
    AnnouncingServer(uvicorn_config(app, host, port, settings), on_ready).run(sockets=[sock] if sock else None)
