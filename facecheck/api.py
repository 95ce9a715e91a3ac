"""The Python API: one thin facade over the library (the CLI is a thin layer over this).

``load`` a detector, ``train`` a config into a run folder, ``evaluate`` a
model on labelled data, ``export_model`` to ONNX, ``inspect_data`` and
``split_data``. The work itself lives in the packages below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facecheck.config import RECOMMENDED_PRESET, TrainConfig
from facecheck.data.images import is_image_path
from facecheck.data.inspect import inspect_records, merge_groups
from facecheck.data.layouts import describe, open_dataset
from facecheck.data.splits import fold_split, make_folds, make_split, write_split
from facecheck.errors import DataError, FacecheckError
from facecheck.evaluation.evaluate import Scores, evaluate, evaluate_with_scores, evaluation_records
from facecheck.evaluation.export_check import export_model
from facecheck.inference.ensemble import Ensemble, load_detector
from facecheck.inference.predictor import Detector, Prediction, expand_image_inputs
from facecheck.inference.protocol import AnyDetector
from facecheck.training.trainer import TrainResult
from facecheck.training.trainer import train as _train


def load(
    path: str | Path | None = None,
    device: str = "auto",
    backend: str = "auto",
    tta: str | None = None,
    precision: str = "auto",
) -> Detector:
    """Load a detector from a run folder (its best.pt), a checkpoint, an exported ``.onnx`` file, or, with
    no ``path``, the model shipped with facecheck.

    ``backend``: torch, onnx or openvino; ``auto`` (default): the fastest installed on a CPU (OpenVINO, then
    ONNX Runtime; the ONNX export is made once and cached), torch on a GPU. ``tta``: test-time augmentation
    (none, flip, five-crop, five-crop-flip; default: the model's own). ``precision``: fp32, bf16, bf16-checked
    (bf16, float32 again for faces near a decision) or ``auto`` (default): the bf16 kind the model's card
    measured to keep its verdicts and run faster, on OpenVINO and a CPU with native bf16; fp32 otherwise.
    """
    return Detector.load(path, device=device, backend=backend, tta=tta, precision=precision)


# The options of `facecheck train` (and crosseval, cv, tune) and where each goes in a TrainConfig.
TRAIN_OPTIONS: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs",), "batch_size": ("batch_size",), "seed": ("seed",), "device": ("device",),
    "freeze_backbone": ("freeze_backbone",), "unfreeze_blocks": ("unfreeze_blocks",), "target_fpr": ("target_fpr",),
    "data": ("data", "data_dir"), "split_seed": ("data", "split_seed"), "val_fraction": ("data", "val_fraction"),
    "max_per_class": ("data", "max_per_class"), "split_file": ("data", "split_file"),
    "pseudo_fakes": ("data", "pseudo_fakes"), "pseudo_fake_ratio": ("data", "pseudo_fake_ratio"),
    "use_fakes": ("data", "use_fakes"), "balance": ("data", "balance"), "lr": ("optim", "lr"),
    "weights": ("model", "weights"), "normalize_jpeg": ("preprocess", "normalize_jpeg"),
    "augment": ("preprocess", "augment"), "face_crop": ("preprocess", "face_crop"),
    "face_margin": ("preprocess", "face_margin"), "no_face": ("preprocess", "no_face"),
    "precision": ("compute", "precision"), "sync_batchnorm": ("compute", "sync_batchnorm"),
}  # fmt: skip


def train_config(
    preset: str = RECOMMENDED_PRESET,
    *,
    resume: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **options: Any,
) -> TrainConfig:
    """The config ``facecheck train`` would run, with its defaults: a preset (or, with ``resume``, that run
    folder's own config), then a settings file, then ``section.key=value`` overrides, then ``options`` (the
    command's options by name, see :data:`TRAIN_OPTIONS`; None leaves a setting as it is). ``data`` is one
    folder or a list; ``seed`` also seeds the split. A resumed run keeps its data, split and preprocessing."""
    from facecheck.config import get_preset, load_config_file, merge, parse_override
    from facecheck.run_folder import RunFolder

    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise FacecheckError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(TRAIN_OPTIONS)}")
    config = RunFolder(resume).resume_config(None) if resume is not None else get_preset(preset)
    if config_file:
        config = merge(config, load_config_file(config_file))
    for text in overrides:
        config = merge(config, parse_override(text))
    chosen = {name: value for name, value in options.items() if value is not None}
    if "seed" in chosen:
        chosen.setdefault("split_seed", chosen["seed"])
    if "data" in chosen:  # one folder, or several sources
        folders = [
            str(Path(d).expanduser().resolve())
            for d in ([chosen["data"]] if isinstance(chosen["data"], (str, Path)) else chosen["data"])
        ]
        chosen["data"] = folders[0] if len(folders) == 1 else folders
    if "split_file" in chosen:
        chosen["split_file"] = str(Path(chosen["split_file"]).expanduser().resolve())
    updates: dict[str, Any] = {}
    for name, value in chosen.items():
        *sections, key = TRAIN_OPTIONS[name]
        target = updates
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    if resume is not None and ("data" in updates or "preprocess" in updates):
        raise FacecheckError("a resumed run keeps its data, split and preprocessing; drop those options")
    return merge(config, updates) if updates else config


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


@dataclass
class Verdicts:
    """What :func:`predict_files` found: one row per input (``predict --format json``'s rows, in input order),
    the detector that judged them, and warnings a person should read (e.g. a face check this install cannot
    make)."""

    rows: list[dict[str, Any]]
    detector: AnyDetector
    warnings: list[str]


def predict_files(
    paths: list[str | Path],
    model: str | Path | list[str | Path | None] | None = None,
    *,
    device: str = "auto",
    backend: str = "auto",
    tta: str | None = None,
    precision: str = "auto",
    threshold: float | None = None,
    face_check: bool | None = None,
    frames: int = 16,
    batch_size: int = 32,
    progress: bool | None = None,
    out: str | Path | None = None,
) -> Verdicts:
    """Everything ``facecheck predict`` does, with its defaults: judge every image and video in ``paths``
    (folders: every image below them) with ``model`` (None: the shipped one; a list: an ensemble).

    A missing path, an empty folder or an unusable ``out`` (checked, not written: see :func:`write_results`)
    raise before any model is loaded. ``backend="auto"`` picks by workload (torch for a few images).
    ``face_check``: look for a face first (default: as the card says); asked for where this install has no face
    detector, it is refused; a model that judges faces then judges whole pictures, said beside every verdict.
    """
    from facecheck.device import resolve_device
    from facecheck.files import check_output_file
    from facecheck.inference.engines import resolve_backend
    from facecheck.inference.predictor import show_progress
    from facecheck.inference.video import is_video_path, predict_video

    inputs = expand_inputs(list(paths))
    if out is not None:
        check_output_file(Path(out), inputs)  # before any scoring: a bad output costs nothing
    images = [p for p in inputs if not is_video_path(p)]
    workload = len(images) + frames * (len(inputs) - len(images))  # each video is scored on `frames` frames
    if precision.startswith("bf16") and backend == "auto":  # asked for by name: the engine that runs it, any workload
        backend = "openvino"
    backend = resolve_backend(backend, resolve_device(device), images=workload)
    models = model if isinstance(model, list) else [model]
    detector = load_detector(models, device=device, backend=backend, tta=tta, precision=precision)
    members = getattr(detector, "members", [detector])
    if face_check is not None:
        for member in members:
            member.face_check = face_check
    problem = next((m.face_check_problem for m in members if m.face_check_problem), None)
    if problem and face_check:  # asked for by name: an error, never a silent skip
        raise FacecheckError(f"--face-check: {problem}")
    warnings = [f"pictures are not checked for a face: {problem}"] if problem else []
    shown = show_progress(len(images)) if progress is None else progress
    by_path: dict[Path, dict[str, Any]] = {}
    for prediction in detector.predict(images, batch_size=batch_size, progress=shown, threshold=threshold):
        by_path.setdefault(Path(prediction.path), prediction.to_dict())
    for path in inputs:
        if is_video_path(path):
            by_path[path] = predict_video(detector, path, frames, threshold=threshold).to_dict()
    return Verdicts([by_path[path] for path in inputs], detector, warnings)


def write_results(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """``predict --out``: the rows as JSON (``.json``) or CSV (``.csv``), written atomically."""
    from facecheck.files import atomic_write_text
    from facecheck.reporting.tables import prediction_csv

    out = Path(out)
    as_json = out.suffix.lower() == ".json"
    atomic_write_text(out, json.dumps(rows, indent=2) + "\n" if as_json else prediction_csv(rows))
    return out


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
    from facecheck.training.preparation import prepare_data

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
