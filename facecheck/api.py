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
from facecheck.errors import DataError
from facecheck.evaluation.detector import Scores, evaluate, evaluate_with_scores, evaluation_records
from facecheck.evaluation.export_check import export_model
from facecheck.inference.ensemble import Ensemble, load_detector
from facecheck.inference.predictor import Detector, Prediction, expand_image_inputs
from facecheck.training.trainer import TrainResult
from facecheck.training.trainer import train as _train


def load(
    path: str | Path | None = None, device: str = "auto", backend: str = "auto", tta: str | None = None
) -> Detector:
    """Load a detector from a run folder (its best.pt), a checkpoint, an exported ``.onnx`` file, or, with
    no ``path``, the model shipped with facecheck.

    ``backend``: torch, onnx or openvino; ``auto`` (default): the fastest installed on a CPU (OpenVINO, then
    ONNX Runtime; the ONNX export is made once and cached), torch on a GPU. ``tta``: test-time augmentation
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


def batch_score(
    model: str | Path | None,
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    address: str | None = None,
    actors: int = 2,
    num_cpus: int | None = None,
    partition_size: int = 256,
    batch_size: int = 32,
    tta: str | None = None,
    face_check: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score image files and folders on Ray into a folder of Parquet partitions (restartable); see
    :mod:`facecheck.inference.ray_scoring`. Needs ``pip install 'facecheck[distributed]'``."""
    from facecheck.inference.ray_scoring import score_with_ray
    from facecheck.inference.video import is_video_path

    paths = expand_inputs(inputs)
    videos = [p for p in paths if is_video_path(p)]
    if videos:
        raise DataError(f"--engine ray scores images, not videos ({videos[0]}); score videos with the local engine")
    return score_with_ray(
        model, paths, out_dir, address=address, actors=actors, num_cpus=num_cpus, partition_size=partition_size,
        batch_size=batch_size, tta=tta, face_check=face_check, progress=progress,
    )  # fmt: skip


def shard_data(
    data_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    shard_size: int = 1000,
    seed: int = 0,
    test_fraction: float = 0.3,
    val_fraction: float = 0.1,
    split_file: str | Path | None = None,
    inspect: bool = True,
    log: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Split a data set as `train` would (group-aware, stratified; or its own split, or ``split_file``) and
    write it as WebDataset shards with a manifest (see :mod:`facecheck.data.shards`)."""
    from facecheck.config import merge
    from facecheck.data.shards import write_shards
    from facecheck.training.trainer import prepare_data

    dirs = [str(Path(d).expanduser().resolve()) for d in data_dirs]
    data = {"data_dir": dirs[0] if len(dirs) == 1 else dirs, "split_seed": seed, "test_fraction": test_fraction,
            "val_fraction": val_fraction, "inspect": inspect,
            "split_file": str(Path(split_file).expanduser().resolve()) if split_file else None}  # fmt: skip
    prepared = prepare_data(merge(TrainConfig(), {"data": data}), log or (lambda _m: None), progress)
    return write_shards(prepared.split, prepared.root, Path(out_dir), shard_size, groups=prepared.groups,
                        sources=prepared.sources, seed=seed)  # fmt: skip


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
    "batch_score",
    "evaluate",
    "evaluate_with_scores",
    "evaluation_records",
    "expand_inputs",
    "export_model",
    "inspect_data",
    "is_image_path",
    "load",
    "load_detector",
    "shard_data",
    "split_data",
    "train",
]
