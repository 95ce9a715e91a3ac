"""Inference engines agree: the PyTorch and ONNX Runtime paths give the same probabilities."""

import json
import os
from pathlib import Path

import pytest

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.errors import DataError
from facecheck.inference.predictor import Detector

from .conftest import quick_config, write_face_set

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


@pytest.mark.parametrize(("preset", "backend"), [("seed-cnn", "onnx"), ("seed-mobilenet", "onnx"),
                                                  ("seed-mobilenet", "openvino")])  # fmt: skip
def test_runtime_backends_match_torch_on_real_images(tmp_path: Path, preset: str, backend: str):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed")
    config = quick_config(preset, None, model={"pretrained": False})
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    images = sorted(write_face_set(tmp_path / "d", per_class=3).rglob("*.png"))
    torch_results = Detector.load(tmp_path / "m.pt").predict(images)
    onnx_detector = Detector.load(tmp_path / "m.pt", backend=backend)
    assert onnx_detector.backend == backend
    onnx_results = onnx_detector.predict(images)
    for a, b in zip(torch_results, onnx_results, strict=True):
        assert a.p_fake == pytest.approx(b.p_fake, abs=1e-5)
        assert a.label == b.label
    # the export is cached: a second load does not export again
    assert len(list((Path(os.environ["FACECHECK_CACHE_DIR"]) / "onnx").glob("*.onnx"))) >= 1


def test_unknown_backend(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    with pytest.raises(DataError, match="unknown backend"):
        Detector.load(tmp_path / "m.pt", backend="tensorrt")


def test_export_with_parity_check_and_int8(tmp_path: Path, capsys, trained_run):
    from facecheck.cli import main

    run, data = trained_run
    out = tmp_path / "model.onnx"
    code = main(["export", "--model", str(run), "--out", str(out), "--quantize", "int8",
                 "--calibration", str(data)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["max_abs_p_fake_difference"] <= 1e-4 and report["check_images"] == 6
    assert {"accuracy_change", "roc_auc_change", "int8_speedup"} <= set(report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp32.onnx", "model.onnx"]  # nothing half-made
    for stage in ("loading the model", "tracing the model and writing ONNX", "checking ONNX Runtime against PyTorch",
                  "quantising to int8", "checking int8 against float32"):  # fmt: skip
        assert f"export: {stage}" in captured.err and captured.err.count(f"export: {stage}") == 2, stage
    # the exported file alone carries its preprocessing and calibration
    standalone = Detector.load(tmp_path / "model.fp32.onnx")
    reference = Detector.load(run)
    images = sorted(data.rglob("*.png"))[:4]
    for a, b in zip(standalone.predict(images), reference.predict(images), strict=True):
        assert a.p_fake == pytest.approx(b.p_fake, abs=1e-5)
    assert standalone.threshold == reference.threshold


def test_foreign_onnx_files_are_refused(tmp_path: Path):
    import torch

    from facecheck.errors import CheckpointError

    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(tmp_path / "other.onnx"), dynamo=False)
    with pytest.raises(CheckpointError, match="not exported by facecheck"):
        Detector.load(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        Detector.load(tmp_path / "junk.onnx")


def test_cli_offers_exactly_the_engines_that_exist():
    from facecheck.choices import BACKENDS
    from facecheck.cli import build_parser

    parser = build_parser()
    for command in ("evaluate", "predict", "serve"):
        sub = parser._subparsers._group_actions[0].choices[command]
        backend = next(a for a in sub._actions if a.dest == "backend")
        assert tuple(backend.choices) == BACKENDS, command


def test_a_failed_parity_check_leaves_no_file(tmp_path: Path, capsys, trained_run):
    from facecheck.cli import main

    (tmp_path / "out").mkdir()
    code = main(["export", "--model", str(trained_run[0]), "--out", str(tmp_path / "out" / "m.onnx"),
                 "--tolerance", "-1"])  # fmt: skip
    assert code == 2 and "nothing was written" in capsys.readouterr().err
    assert list((tmp_path / "out").iterdir()) == []


def test_sigterm_during_export_leaves_no_partial_file(tmp_path: Path, trained_run):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "facecheck", "export", "--model", str(trained_run[0]), "--out", f"{out}/m.onnx"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob(".m.onnx.*.partial.onnx")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the export ended before a partial file could be seen"
    process.send_signal(signal.SIGTERM)  # what `kill` sends
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "export interrupted: no partial file was left" in err
    assert "--resume" not in err and "epochs" not in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_batches_are_stacked_as_torch_would():
    import torch

    from facecheck.inference.predictor import _stack

    tensors = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    assert torch.equal(_stack(tensors), torch.stack(tensors))
    assert torch.equal(_stack(tensors[:1]), torch.stack(tensors[:1])) and _stack(tensors[:1]).shape == (1, 2, 3, 8, 8)
