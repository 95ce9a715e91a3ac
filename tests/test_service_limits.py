"""The service's limits on a real socket: streamed bodies, slow clients, decoding off the event loop, 16-bit cost."""

import io
import select
import socket
import threading
import time
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from PIL import Image

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.data.images import read_image, to_rgb

from .conftest import quick_config, start_live_server

LIMITS = {"max_upload_bytes": 100_000, "head_timeout_s": 1.0, "body_timeout_s": 2.0, "keep_alive_s": 1}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("limits")
    config = quick_config("seed-cnn", None)
    save_checkpoint(folder / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    base, stop = start_live_server(folder / "m.pt", **LIMITS)
    yield base
    stop()


def _connect(base: str) -> socket.socket:
    url = urlparse(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What the server sent, and whether it closed the connection within ``seconds``."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return received, True
    except TimeoutError:
        return received, False
    except ConnectionResetError:
        return received, True


def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit(live):
    sock = _connect(live)
    head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    sock.sendall(head + b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))  # a well-formed start: only the size is wrong
    chunk = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
    sent, answer = 0, b""
    try:
        while sent < 200 * 1024 * 1024:  # a 200 MB body, unless the server stops it
            if select.select([sock], [], [], 0.01)[0]:
                answer = sock.recv(65536)
                break
            sock.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    rest, closed = _read_until_closed(sock, 5)
    answer += rest
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error":"request_too_large"' in answer and closed
    assert sent < 20 * 1024 * 1024, f"the server read {sent} bytes of a body past a {100_000}-byte limit"


def test_slow_or_missing_request_head_is_cut_off(live):
    silent = _connect(live)
    partial = _connect(live)
    partial.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    started = time.perf_counter()
    for sock in (silent, partial):
        _, closed = _read_until_closed(sock, 10)
        sock.close()
        assert closed, "a connection without a complete request head stayed open"
    assert time.perf_counter() - started < 9


def test_slow_body_gets_408_and_the_connection_closes(live):
    sock = _connect(live)
    sock.sendall(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 5000\r\n\r\n--x\r\n"
    )
    answer, closed = _read_until_closed(sock, 10)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408") and b'"error":"request_timeout"' in answer and closed


def test_service_still_answers_after_the_limits(live):
    assert httpx.get(f"{live}/health", timeout=10).status_code == 200


def test_health_answers_while_an_upload_is_being_decoded(tmp_path: Path, monkeypatch):
    import facecheck.serving.app as app_module

    decoding, release = threading.Event(), threading.Event()
    real_decode = app_module.decode_upload

    def slow_decode(*args):
        decoding.set()
        release.wait(20)  # held until the test has seen /health answer
        return real_decode(*args)

    monkeypatch.setattr(app_module, "decode_upload", slow_decode)
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    base, stop = start_live_server(tmp_path / "m.pt")
    try:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (90, 120, 150)).save(buffer, "PNG")
        upload = {}

        def post() -> None:
            upload["status"] = httpx.post(f"{base}/v1/predict", files={"file": buffer.getvalue()}, timeout=60)

        poster = threading.Thread(target=post)
        poster.start()
        assert decoding.wait(20)
        health = httpx.get(f"{base}/health", timeout=15)  # on the event loop, the decode would block this
        answered_during_decode = not release.is_set()
        release.set()
        poster.join(30)
    finally:
        release.set()
        stop()
    assert health.status_code == 200 and answered_during_decode
    assert upload["status"].status_code == 200


def test_sixteen_bit_images_are_reduced_without_float_copies():
    pixels = np.random.default_rng(0).integers(300, 60000, (1000, 1200), dtype=np.uint16)
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    tracemalloc.start()
    rgb = to_rgb(image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # numpy's allocations are traced: one full-size float64 copy alone is 8 bytes a pixel (the old way: ~26)
    assert peak < 8 * pixels.size, f"{peak / pixels.size:.1f} bytes a pixel"
    low, high = int(pixels.min()), int(pixels.max())
    expected = ((pixels.astype(np.float64) - low) * (255.0 / (high - low))).clip(0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(rgb)[..., 0], expected)  # same values as the plain formula


def test_pixel_limit_is_read_from_the_header_before_decoding():
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, "PNG")
    from facecheck.data.images import ImageTooLarge

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match="5000x5000"):
        read_image(io.BytesIO(buffer.getvalue()), max_pixels=1_000_000, name="upload")
    assert read_image(io.BytesIO(buffer.getvalue()), max_pixels=25_000_000).size == (5000, 5000)
    assert time.perf_counter() - started < 60  # (sanity only; the refusal itself decodes nothing)
