"""The Python API: ``load``, ``train``, ``evaluate``. The CLI is a thin layer over these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from facecheck.checkpoint import resolve_checkpoint_path
from facecheck.config import TrainConfig
from facecheck.data.discovery import CLASS_NAMES, ImageRecord, iter_images
from facecheck.data.images import is_image_path, load_image
from facecheck.data.inspect import inspect_records, merge_groups
from facecheck.data.layouts import describe, open_dataset
from facecheck.data.splits import fold_split, make_folds, make_split, read_split, write_split
from facecheck.errors import DataError
from facecheck.evaluation.metrics import full_metrics
from facecheck.evaluation.perturb import Perturbation
from facecheck.inference.ensemble import Ensemble, load_detector
from facecheck.inference.predictor import Detector, Prediction
from facecheck.training.trainer import SPLIT_FILE, TrainResult, resolve_data_dir
from facecheck.training.trainer import train as _train


def load(path: str | Path, device: str = "auto", backend: str = "torch", tta: str | None = None) -> Detector:
    """Load a detector from a run folder (its best.pt) or a checkpoint file.

    ``backend``: torch, onnx or openvino; ``tta``: test-time augmentation
    (none, flip, five-crop, five-crop-flip; default: the model's own).
    """
    return Detector.load(path, device=device, backend=backend, tta=tta)


def train(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, quiet: bool = False) -> TrainResult:
    """Train ``config`` into ``run_dir`` (see :func:`facecheck.training.trainer.train`)."""
    return _train(config, run_dir, resume=resume, quiet=quiet)


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given; folders become the images found below them (sorted)."""
    expanded: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = iter_images(path)
            if not found:
                raise DataError(f"no images (jpg, jpeg, png, webp, bmp) found in folder {path}")
            expanded.extend(found)
        else:
            expanded.append(path)
    return expanded


def evaluation_records(
    detector: Detector | Ensemble, data: str | Path | None, split: str = "auto"
) -> tuple[list[ImageRecord], str, dict[Path, dict[str, str]]]:
    """The labelled images to evaluate on, where they came from, and their metadata.

    ``split="auto"``: with no ``data``, or with the model's own training data,
    only the run's test split is used, so training images never inflate a
    score; a set with its own split (e.g. 140k) is scored on its test part.
    ``split="all"`` uses every image in ``data``.
    """
    config = TrainConfig.from_dict(detector.checkpoint["config"])
    run_dir = resolve_checkpoint_path(detector.source).parent
    split_file = run_dir / SPLIT_FILE
    if data is None:
        if not split_file.is_file():
            raise DataError("no --data given and the model has no run folder with a split to take its test images from")
        root = resolve_data_dir(config, lambda _message: None)
        return read_split(split_file, root)["test"], f"test split of {run_dir}", {}
    data_path = Path(data).expanduser().resolve()
    dataset = open_dataset(data_path)
    trained_here = config.data.data_dir is not None and Path(config.data.data_dir).expanduser().resolve() == data_path
    if split == "auto" and split_file.is_file() and trained_here:
        test = read_split(split_file, dataset.root)["test"]
        note = "the model was trained on this folder; --split all to override"
        return test, f"test split of {data_path} ({note})", dataset.metadata
    if split == "auto" and dataset.split is not None:
        note = f"{dataset.layout}; --split all for every image"
        return dataset.split["test"], f"test part of {data_path} ({note})", dataset.metadata
    return dataset.records, str(data_path), dataset.metadata


def evaluate(
    model: str | Path | Detector | Ensemble,
    data: str | Path | None = None,
    *,
    split: str = "auto",
    batch_size: int = 64,
    perturbations: list[Perturbation] | None = None,
) -> dict[str, Any]:
    """Score a model on labelled data; returns the metrics dict (plus ``data`` and ``errors``).

    With ``perturbations``, the evaluation is repeated on perturbed copies of
    the images; their metrics are under ``perturbations[name]``.
    """
    return evaluate_with_scores(model, data, split=split, batch_size=batch_size, perturbations=perturbations)[0]


@dataclass
class Scores:
    """Per-image results behind an evaluation (readable images only)."""

    paths: list[str]
    labels: np.ndarray
    p_fake: np.ndarray
    metadata: list[dict[str, str]]


def evaluate_with_scores(
    model: str | Path | Detector | Ensemble,
    data: str | Path | None = None,
    *,
    split: str = "auto",
    batch_size: int = 64,
    perturbations: list[Perturbation] | None = None,
    by: str | None = None,
) -> tuple[dict[str, Any], Scores]:
    """:func:`evaluate` plus the per-image scores; ``by`` breaks the metrics down by a metadata column."""
    detector = model if isinstance(model, (Detector, Ensemble)) else load(model)
    records, source, metadata = evaluation_records(detector, data, split)
    if not records:
        raise DataError(f"no images to evaluate in {source}")
    result, scores = _score(detector, records, batch_size, None, metadata)
    result["data"] = source
    result["model"] = getattr(detector, "description", detector.source)
    result["tta"] = detector.tta
    result["class_names"] = list(CLASS_NAMES)
    if by:
        values = [m.get(by) for m in scores.metadata]
        if all(v is None for v in values):
            raise DataError(f"no image in {source} has the metadata column {by!r}")
        result["breakdown"] = {by: {}}
        for value in sorted({v for v in values if v is not None}):
            chosen = np.array([v == value for v in values])
            result["breakdown"][by][value] = full_metrics(
                scores.labels[chosen], scores.p_fake[chosen], detector.threshold, resamples=0
            )
    if perturbations:
        result["perturbations"] = {
            p.name: {k: v for k, v in _score(detector, records, batch_size, p, metadata)[0].items() if k != "errors"}
            for p in perturbations
        }
    return result, scores


def _score(
    detector: Detector | Ensemble,
    records: list[ImageRecord],
    batch_size: int,
    perturbation: Perturbation | None,
    metadata: dict[Path, dict[str, str]],
) -> tuple[dict[str, Any], Scores]:
    if perturbation is None:
        predictions = detector.predict([r.path for r in records], batch_size=batch_size)
    else:
        predictions = []
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            images: list[Any] = []
            for record in chunk:
                try:
                    images.append(perturbation.apply(load_image(record.path)))
                except DataError:
                    images.append(record.path)  # reported as unreadable by predict
            chunk_predictions = detector.predict(images, batch_size=batch_size)
            for record, prediction in zip(chunk, chunk_predictions, strict=True):
                prediction.path = str(record.path)
            predictions.extend(chunk_predictions)
    scored = [(r, p) for r, p in zip(records, predictions, strict=True) if p.error is None]
    errors = [p for p in predictions if p.error is not None]
    if not scored:
        raise DataError(f"none of the {len(records)} images could be read")
    labels = np.array([r.label for r, _ in scored])
    p_fake = np.array([p.p_fake for _, p in scored])
    result = full_metrics(labels, p_fake, detector.threshold)
    result["n_unreadable"] = len(errors)
    result["errors"] = [p.to_dict() for p in errors]
    scores = Scores([str(r.path) for r, _ in scored], labels, p_fake, [metadata.get(r.path, {}) for r, _ in scored])
    return result, scores


def export_model(
    model: str | Path,
    out: str | Path,
    *,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    check_data: str | Path | None = None,
    tolerance: float = 1e-4,
    max_check_images: int = 200,
) -> dict[str, Any]:
    """Export a checkpoint to ONNX and check it against PyTorch on real images.

    The parity check uses ``check_data`` (or the run's own test split): the
    largest difference of ``p_fake`` between PyTorch and ONNX Runtime must stay
    within ``tolerance`` for float32. With ``quantize="int8"``, ``out`` holds
    the int8 model (calibrated on ``calibration``), the float32 one is kept
    beside it, and accuracy, ROC AUC and speed of both are reported.
    """
    import time

    from facecheck.inference.export import checkpoint_card, export_onnx, quantize_int8

    if quantize not in (None, "int8"):
        raise DataError(f"unknown quantisation {quantize!r}; only int8 is supported")
    out = Path(out)
    if out.suffix != ".onnx":
        raise DataError("--out must end in .onnx")
    torch_detector = load(model, device="cpu")
    fp32_path = out if quantize is None else out.with_suffix(".fp32.onnx")
    export_onnx(
        torch_detector.model, torch_detector.preprocess, fp32_path, card=checkpoint_card(torch_detector.checkpoint)
    )
    records, source, _ = evaluation_records(torch_detector, check_data)
    records = records[:: max(1, len(records) // max_check_images)][:max_check_images]
    paths = [r.path for r in records]
    labels = np.array([r.label for r in records])
    reference = np.array([p.p_fake for p in torch_detector.predict(paths)], dtype=float)
    fp32 = Detector.load(fp32_path, backend="onnx")
    fp32_scores = np.array([p.p_fake for p in fp32.predict(paths)], dtype=float)
    report: dict[str, Any] = {
        "onnx": str(fp32_path),
        "check_images": len(paths),
        "check_data": source,
        "max_abs_p_fake_difference": float(np.abs(fp32_scores - reference).max()),
        "tolerance": tolerance,
    }
    if report["max_abs_p_fake_difference"] > tolerance:
        raise DataError(
            f"ONNX export differs from PyTorch by {report['max_abs_p_fake_difference']:.2e} "
            f"(more than {tolerance:g}) on {len(paths)} images of {source}"
        )
    if quantize == "int8":
        if calibration is None:
            raise DataError("--quantize int8 needs --calibration DIR (a few hundred representative images)")
        calibration_paths = expand_inputs([calibration])[:256]
        tensors = [torch_detector.single_view_transform(load_image(p)) for p in calibration_paths]
        quantize_int8(fp32_path, out, tensors)
        int8 = Detector.load(out, backend="onnx")
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
            report[f"{name}_accuracy"] = float(((scores >= threshold).astype(int) == labels).mean())
            report[f"{name}_roc_auc"] = float(roc_auc_score(labels, scores)) if both else None
        report["int8"] = str(out)
        report["calibration_images"] = len(tensors)
        report["accuracy_change"] = report["int8_accuracy"] - report["fp32_accuracy"]
        report["roc_auc_change"] = (report["int8_roc_auc"] - report["fp32_roc_auc"]) if both else None
        report["fp32_images_per_s"] = throughput(fp32)
        report["int8_images_per_s"] = throughput(int8)
        report["int8_speedup"] = report["int8_images_per_s"] / report["fp32_images_per_s"]
        report["int8_max_abs_p_fake_difference"] = float(np.abs(int8_scores - reference).max())
    return report


def inspect_data(data_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Per-class facts, duplicate sets and shortcut warnings of a class-folder data set."""
    dataset = open_dataset(data_dir)
    report = inspect_records(dataset.records, dataset.root, progress)
    report["layout"] = describe(dataset)
    return report


def split_data(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    folds: int = 0,
    seed: int = 0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    progress: bool = False,
) -> list[Path]:
    """Write a group-aware split file (or one per fold) that `train --split-file` accepts."""
    dataset = open_dataset(data_dir)
    root, records = dataset.root, dataset.records
    report = inspect_records(records, root, progress)
    readable = [i for i, fact in enumerate(report["facts"]) if fact["error"] is None]
    groups = merge_groups(dataset.group_ids(records), report["groups"])
    records = [records[i] for i in readable]
    groups = [groups[i] for i in readable]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if folds:
        fold_of = make_folds(records, folds, seed, groups)
        written = []
        for fold in range(folds):
            split = fold_split(records, fold_of, fold, val_fraction, seed, groups)
            write_split(split, out / f"fold_{fold}.csv", root)
            written.append(out / f"fold_{fold}.csv")
        return written
    write_split(make_split(records, test_fraction, val_fraction, seed, groups), out / "split.csv", root)
    return [out / "split.csv"]


__all__ = [
    "Detector",
    "Ensemble",
    "Prediction",
    "evaluate",
    "expand_inputs",
    "inspect_data",
    "is_image_path",
    "load",
    "load_detector",
    "split_data",
    "train",
]
