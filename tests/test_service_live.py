"""A real uvicorn server on loopback: a short load run and a short fuzz run (the full ones are benchmarks)."""

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from facecheck.checkpoint import build_model, save_checkpoint
from facecheck.inference.predictor import Detector
from facecheck.serving.app import ServeSettings, create_app
from facecheck.serving.loadtest import fuzz_cases, require_loopback, run_fuzz, run_load

from .conftest import quick_config


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("live")
    config = quick_config("seed-cnn", None)
    save_checkpoint(folder / "m.pt", build_model(config), config, epoch=1, metrics={})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(Detector.load(folder / "m.pt"), ServeSettings(workers=2, queue_limit=32))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def _make() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_short_load_run(live_server):
    report = run_load(live_server, _make(), clients=4, requests=24, max_seconds=60)
    assert report["ok"] == 24 and not report["errors"]
    assert report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]


def test_short_fuzz_run_leaves_the_service_healthy(live_server):
    valid = _make()
    report = run_fuzz(live_server, fuzz_cases(48, seed=1, valid=valid), valid)
    assert report["ok"], report
    assert report["by_kind"]["huge"] == {413: 6} and report["by_kind"]["empty"] == {400: 6}


def test_load_tools_refuse_other_hosts():
    with pytest.raises(ValueError, match="only target this machine"):
        require_loopback("http://192.168.1.10:8000")
    with pytest.raises(ValueError):
        run_load("http://example.com", b"", clients=1, requests=1)
