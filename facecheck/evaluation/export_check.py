"""Exporting a checkpoint to ONNX, checked against PyTorch on real images (and int8 against float32)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facecheck.data.images import load_image
from facecheck.errors import DataError
from facecheck.evaluation.evaluate import evaluation_records
from facecheck.evaluation.metrics import classification_metrics
from facecheck.files import creation_mode
from facecheck.inference.predictor import Detector

Log = Callable[[str], None]


@contextmanager
def _stage(log: Log, what: str) -> Iterator[None]:
    """Say what a step of the export is doing, then how long it took (each can take several seconds)."""
    log(f"export: {what} ...")
    started = time.perf_counter()
    yield
    log(f"export: {what}: done in {time.perf_counter() - started:.1f} s")


def export_model(
    model: str | Path | None,
    out: str | Path,
    *,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    check_data: str | Path | None = None,
    tolerance: float = 1e-4,
    max_check_images: int = 200,
    log: Log | None = None,
) -> dict[str, Any]:
    """Export a checkpoint to ONNX and check it against PyTorch on real images.

    The parity check uses ``check_data`` (or the run's own test split): the
    largest difference of ``p_fake`` between PyTorch and ONNX Runtime must stay
    within ``tolerance`` for float32. With ``quantize="int8"``, ``out`` holds
    the int8 model (calibrated on ``calibration``), the float32 one is kept
    beside it, and accuracy, ROC AUC and speed of both are reported.

    Files are written under temporary names beside ``out`` and renamed only once every check has
    passed: an export that fails or is interrupted leaves nothing behind (and an older ``out`` as it
    was). ``log`` is told each stage (loading, exporting, checking, quantising) and its duration.
    """
    from facecheck.inference.export import export_onnx, quantize_int8

    say: Log = log or (lambda _message: None)
    if quantize not in (None, "int8"):
        raise DataError(f"unknown quantisation {quantize!r}; only int8 is supported")
    if quantize == "int8" and calibration is None:
        raise DataError("--quantize int8 needs --calibration DIR (a few hundred representative images)")
    out = Path(out)
    if out.suffix != ".onnx":
        raise DataError("--out must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    final_fp32 = out if quantize is None else out.with_suffix(".fp32.onnx")
    staged: list[Path] = []

    def staging_path(final: Path) -> Path:
        # Ends in .onnx (the loader goes by the suffix) and starts with a dot (hidden until complete).
        handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial.onnx", dir=final.parent)
        staged.append(Path(name))  # at once: an interruption from here on still removes it
        try:
            os.fchmod(handle, creation_mode())  # the user's umask, not mkstemp's 0600
        finally:
            os.close(handle)
        return Path(name)

    try:
        with _stage(say, "loading the model"):
            torch_detector = Detector.load(model, device="cpu")
        fp32_path = staging_path(final_fp32)
        with _stage(say, "tracing the model and writing ONNX"):
            export_onnx(torch_detector.model, torch_detector.preprocess, fp32_path, card=torch_detector.card)
        records, source, _ = evaluation_records(torch_detector, check_data)
        records = records[:: max(1, len(records) // max_check_images)][:max_check_images]
        paths = [r.path for r in records]
        labels = np.array([r.label for r in records])
        with _stage(say, f"checking ONNX Runtime against PyTorch on {len(paths)} images"):
            reference = np.array([p.p_fake for p in torch_detector.predict(paths)], dtype=float)
            fp32 = Detector.load(fp32_path, backend="onnx")
            fp32_scores = np.array([p.p_fake for p in fp32.predict(paths)], dtype=float)
        report: dict[str, Any] = {
            "onnx": str(final_fp32),
            "check_images": len(paths),
            "check_data": source,
            "max_abs_p_fake_difference": float(np.abs(fp32_scores - reference).max()),
            "tolerance": tolerance,
        }
        if report["max_abs_p_fake_difference"] > tolerance:
            raise DataError(
                f"ONNX export differs from PyTorch by {report['max_abs_p_fake_difference']:.2e} "
                f"(more than {tolerance:g}) on {len(paths)} images of {source}; nothing was written"
            )
        int8_path = None
        if quantize == "int8":
            assert calibration is not None
            int8_path = staging_path(out)
            _quantise_and_compare(
                torch_detector, fp32, fp32_path, int8_path, Path(calibration), paths, labels, fp32_scores, reference,
                report, say, quantize_int8,
            )  # fmt: skip
            report["int8"] = str(out)
        # Every check passed: only now do the files get their names.
        os.replace(fp32_path, final_fp32)
        if int8_path is not None:
            os.replace(int8_path, out)
        return report
    finally:
        for path in staged:
            path.unlink(missing_ok=True)


def _quantise_and_compare(
    torch_detector: Detector,
    fp32: Detector,
    fp32_path: Path,
    int8_path: Path,
    calibration: Path,
    paths: list[Path],
    labels: np.ndarray,
    fp32_scores: np.ndarray,
    reference: np.ndarray,
    report: dict[str, Any],
    say: Log,
    quantize_int8: Callable[..., Path],
) -> None:
    """int8 quantisation calibrated on ``calibration`` images, then its accuracy and speed against float32."""
    from sklearn.metrics import roc_auc_score

    from facecheck.data.discovery import iter_images

    calibration_paths = iter_images(calibration)[:256]
    with _stage(say, f"quantising to int8 (calibrating on {len(calibration_paths)} images)"):
        tensors = [torch_detector.single_view_transform(load_image(p)) for p in calibration_paths]
        quantize_int8(fp32_path, int8_path, tensors)
    with _stage(say, f"checking int8 against float32 on {len(paths)} images (accuracy, ROC AUC, speed)"):
        int8 = Detector.load(int8_path, backend="onnx")
        int8_scores = np.array([p.p_fake for p in int8.predict(paths)], dtype=float)

        def throughput(detector: Detector) -> float:
            batch = torch.stack([torch_detector.single_view_transform(load_image(p)) for p in paths[:32]])
            detector.predict_tensor(batch)
            started = time.perf_counter()
            for _ in range(3):
                detector.predict_tensor(batch)
            return 3 * len(batch) / (time.perf_counter() - started)

        threshold = torch_detector.threshold
        both = len(np.unique(labels)) == 2
        for name, scores in (("fp32", fp32_scores), ("int8", int8_scores)):
            report[f"{name}_accuracy"] = classification_metrics(labels, scores, threshold)["accuracy"]
            report[f"{name}_roc_auc"] = float(roc_auc_score(labels, scores)) if both else None
        report["calibration_images"] = len(tensors)
        report["accuracy_change"] = report["int8_accuracy"] - report["fp32_accuracy"]
        report["roc_auc_change"] = (report["int8_roc_auc"] - report["fp32_roc_auc"]) if both else None
        report["fp32_images_per_s"] = throughput(fp32)
        report["int8_images_per_s"] = throughput(int8)
        report["int8_speedup"] = report["int8_images_per_s"] / report["fp32_images_per_s"]
        report["int8_max_abs_p_fake_difference"] = float(np.abs(int8_scores - reference).max())
