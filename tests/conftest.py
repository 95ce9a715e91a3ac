"""Shared fixtures: tiny generated data sets, caches in temporary folders, quick configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecheck.config import TrainConfig, get_preset, merge
from facecheck.data.synthetic import draw_face

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_implicit_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--backend auto`` skips OpenVINO inside the test process; the engine tests name it explicitly.

    With OpenVINO compiled in many tests, the test process crashed (a segfault, twice in CI, at a later test's
    fork: DataLoader workers, torch.compile's workers) and did not when re-run alone: its threads live for the
    process. Users' processes seldom fork after predicting; the test process forks on purpose.
    """
    from facecheck.inference import engines

    monkeypatch.setattr(engines, "AUTO_ORDER", tuple(name for name in engines.AUTO_ORDER if name != "openvino"))
    # The same for the face detector's networks (tests/test_scoring_pipeline.py compiles them by name).
    from facecheck.data import face_engine

    monkeypatch.setattr(face_engine, "openvino_installed", lambda: False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never write into the user's cache (or beside the data) from tests.
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("FACECHECK_OFFLINE", "1")


def write_face_set(
    root: Path, per_class: int = 10, size: int = 64, seed: int = 0, names: tuple[str, str] = ("real", "fake")
) -> Path:
    rng = np.random.default_rng(seed)
    for folder, fake in zip(names, (False, True), strict=True):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_face(rng, fake, size=size).save(root / folder / f"{index:03d}.png")
    return root


@pytest.fixture
def face_dir(tmp_path: Path) -> Path:
    return write_face_set(tmp_path / "faces")


def quick_config(preset: str, data_dir: Path | None, **overrides: object) -> TrainConfig:
    """A preset shrunk to seconds: 64px inputs, one epoch, small batches."""
    changes: dict = {"epochs": 1, "batch_size": 8, "eval_batch_size": 16, "preprocess": {"image_size": 64}}
    changes["data"] = {"data_dir": str(data_dir) if data_dir else None}
    for key, value in overrides.items():
        changes[key] = value
    return merge(get_preset(preset), changes)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One small trained seed-cnn run shared by the tests that only need *a* trained model: ``(run, data)``.

    Read-only: a test that changes a run trains (or copies) its own.
    """
    from facecheck.training.trainer import train

    root = tmp_path_factory.mktemp("trained-run")
    data = write_face_set(root / "faces", per_class=10)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACECHECK_CACHE_DIR", str(root / "cache"))
        train(quick_config("seed-cnn", data), root / "run", quiet=True)
    return root / "run", data


def start_live_server(model_path: Path, **settings):
    """Run the facecheck app on a free loopback port in a thread; returns ``(base_url, stop)``."""
    import threading

    import uvicorn

    from facecheck.inference.predictor import Detector
    from facecheck.serving.app import ServeSettings, create_app
    from facecheck.serving.loadtest import free_loopback_port, wait_until_healthy
    from facecheck.serving.server import uvicorn_config

    port = free_loopback_port()
    serve_settings = ServeSettings(**settings)
    app = create_app(Detector.load(model_path), serve_settings)
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, serve_settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    assert wait_until_healthy(base, 30), "test server did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return base, stop
