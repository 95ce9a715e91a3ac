"""The Python API: one thin facade over the library (the CLI is a thin layer over this).

``load`` a detector, ``train`` a config into a run folder, ``evaluate`` a
model on labelled data, ``export_model`` to ONNX, ``inspect_data`` and
``split_data``. The work itself lives in the packages below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facecheck.config import TrainConfig
from facecheck.data.images import is_image_path
from facecheck.data.inspect import inspect_records, merge_groups
from facecheck.data.layouts import describe, open_dataset
from facecheck.data.splits import fold_split, make_folds, make_split, write_split
from facecheck.evaluation.detector import Scores, evaluate, evaluate_with_scores, evaluation_records
from facecheck.evaluation.export_check import export_model
from facecheck.inference.ensemble import Ensemble, load_detector
from facecheck.inference.predictor import Detector, Prediction, expand_image_inputs
from facecheck.training.trainer import TrainResult
from facecheck.training.trainer import train as _train


def load(
    path: str | Path | None = None, device: str = "auto", backend: str = "torch", tta: str | None = None
) -> Detector:
    """Load a detector from a run folder (its best.pt), a checkpoint, an exported ``.onnx`` file, or, with
    no ``path``, the model shipped with facecheck.

    ``backend``: torch, onnx or openvino; ``tta``: test-time augmentation
    (none, flip, five-crop, five-crop-flip; default: the model's own).
    """
    return Detector.load(path, device=device, backend=backend, tta=tta)


def train(
    config: TrainConfig, run_dir: str | Path, *, resume: bool = False, quiet: bool = False, keep: str = "both"
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (see :func:`facecheck.training.trainer.train`).

    ``keep="best"``: remove ``last.pt`` once the run has finished; the run can then no longer be resumed.
    """
    return _train(config, run_dir, resume=resume, quiet=quiet, keep=keep)


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given (videos too); folders become the images found below them (sorted).

    A path that does not exist, or a folder without images, raises before any work (as ``Detector.predict``).
    """
    return [Path(item).expanduser() for item in expand_image_inputs([Path(p) for p in paths])]


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
    "Scores",
    "evaluate",
    "evaluate_with_scores",
    "evaluation_records",
    "expand_inputs",
    "export_model",
    "inspect_data",
    "is_image_path",
    "load",
    "load_detector",
    "split_data",
    "train",
]
