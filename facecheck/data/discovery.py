"""Finding labelled images in a class-folder layout (one folder per class)."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from facecheck.data.images import is_image_path
from facecheck.errors import DataError
from facecheck.paths import check_cache_outside

# Label indices are fixed so that "fake" is always the positive class.
CLASS_NAMES = ("real", "fake")
REAL, FAKE = 0, 1

_ALIASES = {
    "real": REAL,
    "genuine": REAL,
    "authentic": REAL,
    "original": REAL,
    "fake": FAKE,
    "ai": FAKE,
    "synthetic": FAKE,
    "generated": FAKE,
    "manipulated": FAKE,
    "deepfake": FAKE,
}
# "training_real", "train-fake", "Real" ... all reduce to an alias above.
_PREFIX = re.compile(r"^(training|train|valid|validation|test|testing)[_\-\s]+")


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: int

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


def class_of_folder(name: str) -> int | None:
    """Map a folder name to a label index, or None if it names no class."""
    key = _PREFIX.sub("", name.strip().lower())
    return _ALIASES.get(key)


def iter_images(folder: Path) -> list[Path]:
    """All image files below ``folder``, sorted, without following symlinked folders.

    Not following folder links makes symlink loops harmless. Only regular files
    (or links to them) count: a FIFO or device named ``x.jpg`` would block a reader.
    """
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and is_image_path(path) and path.is_file():
                found.append(path)
    return found


def discover(data_dir: str | Path) -> list[ImageRecord]:
    """Return labelled image records of ``data_dir`` or raise a clear :class:`DataError`."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root}")
    check_cache_outside(root)
    class_dirs: dict[int, list[Path]] = {REAL: [], FAKE: []}
    for child in sorted(root.iterdir()):
        if child.is_dir():
            label = class_of_folder(child.name)
            if label is not None:
                class_dirs[label].append(child)
    if not class_dirs[REAL] and not class_dirs[FAKE]:
        raise DataError(
            f"no class folders in {root}: expected one folder per class named "
            "real and fake (also Real/Fake, training_real/training_fake)"
        )
    records: list[ImageRecord] = []
    for label, dirs in class_dirs.items():
        for folder in dirs:
            records.extend(ImageRecord(path, label) for path in iter_images(folder))
    counts = Counter(r.label for r in records)
    missing = [CLASS_NAMES[c] for c in (REAL, FAKE) if counts[c] == 0]
    if len(missing) == 2:
        raise DataError(f"no images (jpg, jpeg, png, webp, bmp) found in the class folders of {root}")
    if missing:
        raise DataError(
            f"only one class has images in {root}: no '{missing[0]}' images found; both real and fake are needed"
        )
    return records


def count_by_class(records: list[ImageRecord]) -> dict[str, int]:
    counts = Counter(r.label for r in records)
    return {name: counts[i] for i, name in enumerate(CLASS_NAMES)}


def limit_per_class(records: list[ImageRecord], max_per_class: int | None) -> list[ImageRecord]:
    """Keep the first ``max_per_class`` images of each class (sorted order, so deterministic)."""
    if max_per_class is None:
        return records
    kept: list[ImageRecord] = []
    seen: Counter[int] = Counter()
    for record in records:
        if seen[record.label] < max_per_class:
            kept.append(record)
            seen[record.label] += 1
    return kept
