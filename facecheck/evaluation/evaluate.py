"""Evaluating a detector (or ensemble) on labelled images: which images, their scores, the metrics.

Pointed at the data a run was trained on, or at nothing, only the run's own
test split is scored, so training images never inflate a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facecheck.data.discovery import CLASS_NAMES, REAL, ImageRecord
from facecheck.data.images import load_image
from facecheck.data.layouts import open_dataset
from facecheck.data.sources import SOURCE, manifest_metadata, resolve_data_dirs, resolve_data_root, source_of
from facecheck.errors import DataError
from facecheck.evaluation.metrics import classification_metrics, full_metrics, result_warnings
from facecheck.evaluation.perturb import Perturbation
from facecheck.inference.predictor import Detector, Prediction, show_progress
from facecheck.inference.protocol import AnyDetector
from facecheck.run_folder import RunFolder


def evaluation_records(
    detector: AnyDetector, data: str | Path | None, split: str = "auto"
) -> tuple[list[ImageRecord], str, dict[Path, dict[str, str]]]:
    """The labelled images to evaluate on, where they came from, and their metadata.

    ``split="auto"``: with no ``data``, or with the model's own training data,
    only the run's test split is used, so training images never inflate a
    score; a set with its own split (e.g. 140k) is scored on its test part.
    ``split="all"`` uses every image in ``data``.
    """
    config = detector.card.training
    run = RunFolder(Path(detector.source).parent) if Path(detector.source).suffix == ".pt" else None
    has_split = run is not None and (run / RunFolder.SPLIT).is_file()
    if data is None:
        if not has_split:
            raise DataError("no --data given and the model has no run folder with a split to take its test images from")
        assert run is not None
        test = run.read_split(resolve_data_root(config, lambda _message: None))["test"]
        dirs = resolve_data_dirs(config, lambda _message: None)
        manifests = _manifests_if_present(dirs)
        metadata = {r.path: {**manifests.get(r.path.resolve(), {}), SOURCE: source_of(r.path, dirs)} for r in test}
        return test, f"test split of {run.path}", metadata
    data_path = Path(data).expanduser().resolve()
    dataset = open_dataset(data_path)
    trained_here = data_path in [Path(d).expanduser().resolve() for d in config.data.data_dirs]
    if split == "auto" and has_split and trained_here:
        assert run is not None
        root = resolve_data_root(config, lambda _message: None)
        test = [r for r in run.read_split(root)["test"] if r.path.resolve().is_relative_to(data_path)]
        note = "the model was trained on this folder; --split all to override"
        return test, f"test split of {data_path} ({note})", dataset.metadata
    if split == "auto" and dataset.split is not None:
        note = f"{dataset.layout}; --split all for every image"
        return dataset.split["test"], f"test part of {data_path} ({note})", dataset.metadata
    return dataset.records, str(data_path), dataset.metadata


def evaluate(
    model: str | Path | AnyDetector,
    data: str | Path | None = None,
    *,
    split: str = "auto",
    batch_size: int = 64,
    perturbations: list[Perturbation] | None = None,
    progress: bool | None = False,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Score a model on labelled data; returns the metrics dict (plus ``data``, ``errors`` and ``warnings``).

    With ``perturbations``, the evaluation is repeated on perturbed copies of
    the images; their metrics are under ``perturbations[name]``. ``progress``:
    a bar on stderr per pass; None: as the CLI chooses (:func:`show_progress`).
    """
    return evaluate_with_scores(
        model, data, split=split, batch_size=batch_size, perturbations=perturbations, progress=progress,
        threshold=threshold,
    )[0]  # fmt: skip


@dataclass
class Scores:
    """Per-image results behind an evaluation (readable images only)."""

    paths: list[str]
    labels: np.ndarray
    p_fake: np.ndarray
    metadata: list[dict[str, str]]


def evaluate_with_scores(
    model: str | Path | AnyDetector,
    data: str | Path | None = None,
    *,
    split: str = "auto",
    batch_size: int = 64,
    perturbations: list[Perturbation] | None = None,
    by: str | None = None,
    progress: bool | None = False,
    threshold: float | None = None,
) -> tuple[dict[str, Any], Scores]:
    """:func:`evaluate` plus the per-image scores; ``by`` breaks the metrics down by a metadata column.

    ``threshold``: decisions (confusion matrix, accuracy, ...) at this p_fake instead of the model's own."""
    detector = model if isinstance(model, AnyDetector) else Detector.load(model)
    threshold = detector.threshold if threshold is None else threshold
    records, source, metadata = evaluation_records(detector, data, split)
    if not records:
        raise DataError(f"no images to evaluate in {source}")
    shown = show_progress(len(records)) if progress is None else progress
    result, scores = _score(detector, records, batch_size, None, metadata, shown, threshold=threshold)
    result["data"] = source
    result["model"] = getattr(detector, "description", detector.source)
    result["tta"] = detector.tta
    # Which engine and precision gave these numbers (a lower precision moves some of them: see the card).
    result["engine"] = f"{detector.backend}, {detector.precision}"
    result["class_names"] = list(CLASS_NAMES)
    if by:
        result["breakdown"] = {by: breakdown(scores, by, threshold, source)}
    result["warnings"] = evaluation_warnings(detector, result)
    sized = _size_warning(detector.card.preprocess, [record.path for record in records])
    if sized:  # e.g. 600 px photos under a native-pixel model: the numbers describe their centres only
        result["warnings"].append(sized)
    if perturbations:
        result["perturbations"] = {}
        for number, perturbation in enumerate(perturbations, 1):
            step = f"{number}/{len(perturbations)}"
            metrics = _score(detector, records, batch_size, perturbation, metadata, shown, step, threshold)[0]
            result["perturbations"][perturbation.name] = {k: v for k, v in metrics.items() if k != "errors"}
    return result, scores


def _size_warning(preprocess: Any, paths: list[Path]) -> str | None:
    """:func:`facecheck.data.transforms.size_warning` for these files, their sizes read from the headers only."""
    from PIL import Image

    from facecheck.data.transforms import size_warning

    if preprocess.image_size is None:
        return None
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)
        except (OSError, ValueError):
            continue  # unreadable files are counted as errors elsewhere
    return size_warning(preprocess, sizes)


def breakdown(scores: Scores, by: str, threshold: float, source: str = "the data") -> dict[str, dict[str, Any]]:
    """Metrics per value of a metadata column.

    A value that holds one class only (a generator's fakes, a collection of reals) has no ROC AUC of its own:
    it gets the share of its images called fake (``called_fake``: the catch rate of a generator, the
    false-fake rate of a real collection), and a generator's fakes get ``roc_auc_vs_reals``, their ROC AUC
    against every real image evaluated with them.
    """
    values = [m.get(by) for m in scores.metadata]
    if all(v is None for v in values):
        raise DataError(f"no image in {source} has the metadata column {by!r}")
    reals = scores.labels == REAL
    table: dict[str, dict[str, Any]] = {}
    for value in sorted({v for v in values if v is not None}):
        chosen = np.array([v == value for v in values])
        row = full_metrics(scores.labels[chosen], scores.p_fake[chosen], threshold, resamples=0)
        matrix = np.asarray(row["confusion_matrix"])  # rows true real/fake, columns called real/fake
        row["called_fake"] = float(matrix[:, 1].sum() / max(matrix.sum(), 1))
        if not reals[chosen].any() and reals.any():
            pair = chosen | reals
            row["roc_auc_vs_reals"] = classification_metrics(scores.labels[pair], scores.p_fake[pair], threshold)[
                "roc_auc"
            ]
        table[value] = row
    return table


def _manifests_if_present(dirs: list[Path]) -> dict[Path, dict[str, str]]:
    """The training sources' manifest columns (generator, ...), or nothing when a source has gone."""
    try:
        return manifest_metadata(dirs)
    except DataError:
        return {}


def evaluation_warnings(detector: AnyDetector, result: dict[str, Any]) -> list[str]:
    """Why a result should not be trusted: too few images, one verdict for everything, and the model's own
    calibration warnings (too few validation images, a temperature stuck at its search bound)."""
    warnings = result_warnings(result, "evaluated")
    for member in getattr(detector, "members", [detector]):
        calibration = member.card.notes.get("calibration") or {}
        warnings += [f"model: {text}" for text in calibration.get("warnings", [])]
    return list(dict.fromkeys(warnings))


def _perturbed(path: Path, perturbation: Perturbation) -> Any:
    """The perturbed image, or the path itself when it cannot be read (predict then reports it unreadable)."""
    try:
        return perturbation.apply(load_image(path))
    except DataError:
        return path


def evaluate_records(
    detector: AnyDetector,
    records: list[ImageRecord],
    metadata: dict[Path, dict[str, str]] | None = None,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[dict[str, Any], Scores]:
    """Metrics and per-image scores of a chosen list of labelled images (e.g. one generator and some reals)."""
    if not records:
        raise DataError("no images to evaluate")
    return _score(detector, records, batch_size, None, metadata or {}, progress)


def _score(
    detector: AnyDetector,
    records: list[ImageRecord],
    batch_size: int,
    perturbation: Perturbation | None,
    metadata: dict[Path, dict[str, str]],
    progress: bool = False,
    step: str = "",
    threshold: float | None = None,
) -> tuple[dict[str, Any], Scores]:
    predictions = []
    # Files: all in one predict call, whose pipeline prepares the next batches while the engine runs one (each
    # new call would start with a batch prepared alone) and shows its own progress. Perturbed copies are made
    # up front, so they come a batch at a time, under a bar of this loop.
    whole = perturbation is None
    desc = f"scoring {perturbation.name} (perturbation {step})" if perturbation is not None else "scoring"
    bar = tqdm(total=len(records), desc=desc, unit="img", disable=whole or not progress, leave=False)
    chunk_size = max(1, len(records)) if whole else batch_size
    for start in range(0, len(records), chunk_size):
        chunk = records[start : start + chunk_size]
        # A listed file that has gone since the split was made counts as unreadable, as a broken one does
        # (predict would refuse the whole batch for a missing path).
        present = [record.path.is_file() for record in chunk]
        inputs: list[Any] = []
        for record, there in zip(chunk, present, strict=True):
            if there:
                inputs.append(record.path if perturbation is None else _perturbed(record.path, perturbation))
        found = iter(detector.predict(inputs, batch_size=batch_size, progress=whole and progress, provenance=False))
        for record, there in zip(chunk, present, strict=True):
            gone = f"{record.path}: not found (or not a regular file)"
            prediction = next(found) if there else Prediction(None, error=gone)
            prediction.path = str(record.path)
            predictions.append(prediction)
        bar.update(len(chunk))
    bar.close()
    scored = [(r, p) for r, p in zip(records, predictions, strict=True) if p.error is None]
    errors = [p for p in predictions if p.error is not None]
    if not scored:
        raise DataError(f"none of the {len(records)} images could be read")
    labels = np.array([r.label for r, _ in scored])
    p_fake = np.array([p.p_fake for _, p in scored])
    result = full_metrics(labels, p_fake, detector.threshold if threshold is None else threshold)
    result["n_unreadable"] = len(errors)
    result["errors"] = [p.to_dict() for p in errors]
    scores = Scores([str(r.path) for r, _ in scored], labels, p_fake, [metadata.get(r.path, {}) for r, _ in scored])
    return result, scores
