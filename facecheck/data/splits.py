"""Deterministic, stratified train/validation/test splits written as CSV files."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from facecheck.data.discovery import CLASS_NAMES, ImageRecord
from facecheck.errors import DataError
from facecheck.files import creation_mode

SPLITS = ("train", "val", "test")


def make_split(
    records: list[ImageRecord],
    test_fraction: float,
    val_fraction: float,
    seed: int,
    groups: list[int] | None = None,
) -> dict[str, list[ImageRecord]]:
    """Split stratified by class; ``val_fraction`` is taken out of the training part.

    With ``groups`` (one id per record; near-duplicates or one identity share
    an id) a group never straddles train, validation and test: the split is
    made over groups, each labelled by its majority class. With every group a
    single image this is the plain stratified split. The same inputs always
    give the same split.
    """
    groups = list(range(len(records))) if groups is None else list(groups)
    if len(groups) != len(records):
        raise ValueError("one group id per record is needed")
    labels = [r.label for r in records]
    if min(labels.count(0), labels.count(1)) < 2:
        raise DataError("each class needs at least 2 images to make a train/test split")
    units = _units(records, groups)
    try:
        train_units, test_units = _split_units(units, test_fraction, seed)
    except ValueError:
        raise DataError(f"{len(records)} images are too few for a test fraction of {test_fraction}") from None
    val_units: list[list[ImageRecord]] = []
    if val_fraction > 0:
        try:
            train_units, val_units = _split_units(train_units, val_fraction, seed)
        except ValueError:
            count = sum(len(u) for u in train_units)
            raise DataError(
                f"{count} training images are too few to carve out a validation fraction of {val_fraction}; "
                "add images or use --val-fraction 0"
            ) from None
    parts = (train_units, val_units, test_units)
    # Sorted so that the file lists (and iteration order) do not depend on shuffling.
    return {
        name: sorted((r for unit in part for r in unit), key=lambda r: str(r.path))
        for name, part in zip(SPLITS, parts, strict=True)
    }


def _units(records: list[ImageRecord], groups: list[int]) -> list[list[ImageRecord]]:
    """Records gathered by group, in order of first appearance."""
    by_group: dict[int, list[ImageRecord]] = {}
    for record, group in zip(records, groups, strict=True):
        by_group.setdefault(group, []).append(record)
    return list(by_group.values())


def _split_units(units: list[list[ImageRecord]], fraction: float, seed: int) -> tuple[list, list]:
    majority = [round(sum(r.label for r in unit) / len(unit)) for unit in units]
    from sklearn.model_selection import train_test_split  # imported when used: ~1 s of every start otherwise

    return train_test_split(units, test_size=fraction, random_state=seed, stratify=majority)


def make_folds(records: list[ImageRecord], folds: int, seed: int, groups: list[int] | None = None) -> list[int]:
    """A fold number per record: stratified by class, groups kept within one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise DataError("--folds must be at least 2")
    labels = [r.label for r in records]
    if min(labels.count(0), labels.count(1)) < folds:
        raise DataError(f"each class needs at least {folds} images for {folds} folds")
    groups = list(range(len(records))) if groups is None else groups
    fold_of = [0] * len(records)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, test_index) in enumerate(splitter.split(records, labels, groups)):
        for index in test_index:
            fold_of[index] = fold
    return fold_of


def fold_split(
    records: list[ImageRecord], fold_of: list[int], fold: int, val_fraction: float, seed: int, groups: list[int]
) -> dict[str, list[ImageRecord]]:
    """Fold ``fold`` as the test part; validation carved group-aware from the others."""
    rest = [i for i, f in enumerate(fold_of) if f != fold]
    test = sorted((records[i] for i in range(len(records)) if fold_of[i] == fold), key=lambda r: str(r.path))
    train_records = [records[i] for i in rest]
    train_groups = [groups[i] for i in rest]
    if val_fraction > 0:
        units = _units(train_records, train_groups)
        train_units, val_units = _split_units(units, val_fraction, seed)
        train = [r for unit in train_units for r in unit]
        val = [r for unit in val_units for r in unit]
    else:
        train, val = train_records, []
    key = lambda r: str(r.path)  # noqa: E731
    return {"train": sorted(train, key=key), "val": sorted(val, key=key), "test": test}


# File names are bytes on Linux and need not be UTF-8: Python keeps the odd bytes as lone surrogates, and
# "surrogateescape" writes them back as the same bytes, so every name survives a trip through split.csv.
PATH_ERRORS = "surrogateescape"


def write_split(split: dict[str, list[ImageRecord]], path: str | Path, root: str | Path) -> None:
    """Write ``path,label,split`` rows; paths relative to ``root`` when they lie under it.

    Written to a temporary file and renamed into place: a failure never leaves half a split file.
    """
    root = Path(root).resolve()
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(handle, creation_mode())  # the user's umask, not mkstemp's 0600
    try:
        with open(handle, "w", newline="", encoding="utf-8", errors=PATH_ERRORS) as stream:
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(["path", "label", "split"])
            for name in SPLITS:
                for record in split.get(name, []):
                    resolved = record.path.resolve()
                    shown = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
                    writer.writerow([shown.as_posix(), record.class_name, name])
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_split(path: str | Path, root: str | Path) -> dict[str, list[ImageRecord]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    root = Path(root)
    split: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
    with open(path, newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        for row in csv.DictReader(handle):
            try:
                label = CLASS_NAMES.index(row["label"])
                split[row["split"]].append(ImageRecord(root / row["path"], label))
            except (KeyError, ValueError):
                raise DataError(f"{path}: malformed row {str(row)[:200]}") from None
    return split
