"""A real uvicorn server on loopback: a short load run and a short fuzz run (the full ones are benchmarks)."""

import pytest

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.serving.loadtest import FUZZ_KINDS, fuzz_cases, require_loopback, run_fuzz, run_load

from .conftest import quick_config, start_live_server

pytestmark = pytest.mark.slow  # starts a real server


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("live")
    config = quick_config("seed-cnn", None)
    save_checkpoint(folder / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    base, stop = start_live_server(folder / "m.pt", workers=2, queue_limit=32)
    yield base
    stop()


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
    report = run_fuzz(live_server, fuzz_cases(2 * len(FUZZ_KINDS), seed=1, valid=valid), valid)
    assert report["ok"], report
    expected = {
        "huge": 413, "huge_jpeg": 413, "huge_bmp": 413, "empty": 400, "zero_bytes": 415, "animated_gif": 415,
        "wrong_type": 415, "wrong_field": 422, "png16": 200, "animated_png": 200, "wrong_content_type": 200,
    }  # fmt: skip
    assert {kind: report["by_kind"][kind] for kind in expected} == {k: {v: 2} for k, v in expected.items()}


def test_load_tools_refuse_other_hosts():
    with pytest.raises(ValueError, match="only target this machine"):
        require_loopback("http://192.168.1.10:8000")
    with pytest.raises(ValueError):
        run_load("http://example.com", b"", clients=1, requests=1)


def test_serve_says_loading_warming_up_and_ready_with_its_url(tmp_path, trained_run):
    import subprocess
    import sys
    import time
    import urllib.request

    from facecheck.serving.loadtest import free_loopback_port

    port = free_loopback_port()
    command = [sys.executable, "-m", "facecheck", "serve", "--model", str(trained_run[0]), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any("ready" in line for line in lines):
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line.strip())
        said = "\n".join(lines)
        assert f"ready: serving on http://127.0.0.1:{port}/" in said, said
        order = [said.index(words) for words in ("loading the model", "warming up", "warmed up in", "ready")]
        assert order == sorted(order)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:  # ready means ready
            assert answer.status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
