"""Deterministic, stratified train/validation/test splits written as CSV files."""

from __future__ import annotations

import csv
from pathlib import Path

from sklearn.model_selection import train_test_split

from facecheck.data.discovery import CLASS_NAMES, ImageRecord
from facecheck.errors import DataError

SPLITS = ("train", "val", "test")


def make_split(
    records: list[ImageRecord], test_fraction: float, val_fraction: float, seed: int
) -> dict[str, list[ImageRecord]]:
    """Split stratified by class; ``val_fraction`` is taken out of the training part.

    The same records, fractions and seed always give the same split.
    """
    labels = [r.label for r in records]
    per_class = min(labels.count(0), labels.count(1))
    if per_class < 2:
        raise DataError("each class needs at least 2 images to make a train/test split")
    try:
        train, test = train_test_split(records, test_size=test_fraction, random_state=seed, stratify=labels)
    except ValueError:
        raise DataError(f"{len(records)} images are too few for a test fraction of {test_fraction}") from None
    val: list[ImageRecord] = []
    if val_fraction > 0:
        try:
            train, val = train_test_split(
                train, test_size=val_fraction, random_state=seed, stratify=[r.label for r in train]
            )
        except ValueError:
            raise DataError(
                f"{len(train)} training images are too few to carve out a validation fraction of {val_fraction}; "
                "add images or use --val-fraction 0"
            ) from None
    # Sorted so that the file lists (and iteration order) do not depend on shuffling.
    return {
        name: sorted(part, key=lambda r: str(r.path)) for name, part in zip(SPLITS, (train, val, test), strict=True)
    }


def write_split(split: dict[str, list[ImageRecord]], path: str | Path, root: str | Path) -> None:
    """Write ``path,label,split`` rows; paths relative to ``root`` when they lie under it."""
    root = Path(root).resolve()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for name in SPLITS:
            for record in split.get(name, []):
                resolved = record.path.resolve()
                shown = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
                writer.writerow([shown.as_posix(), record.class_name, name])


def read_split(path: str | Path, root: str | Path) -> dict[str, list[ImageRecord]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    root = Path(root)
    split: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                label = CLASS_NAMES.index(row["label"])
                split[row["split"]].append(ImageRecord(root / row["path"], label))
            except (KeyError, ValueError):
                raise DataError(f"{path}: malformed row {row}") from None
    return split
