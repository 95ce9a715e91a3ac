"""Recognising data-set layouts: class folders, public sets with their own splits, and manifests.

``open_dataset(path)`` returns the labelled images, the set's own split when
it has one, groups (images that must stay on one side of a split) and
per-image metadata (for example CIPLAB's difficulty), and names the layout
it recognised.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facecheck.data.discovery import CLASS_NAMES, FAKE, REAL, ImageRecord, class_of_folder, discover, iter_images
from facecheck.errors import DataError

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "val",
    "validation": "val",
    "val": "val",
    "test": "test",
}
MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass
class Dataset:
    root: Path
    layout: str
    records: list[ImageRecord]
    split: dict[str, list[ImageRecord]] | None = None
    groups: dict[Path, str] = field(default_factory=dict)
    metadata: dict[Path, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def group_ids(self, records: list[ImageRecord]) -> list[str] | None:
        if not self.groups:
            return None
        return [self.groups.get(r.path, f"file:{r.path}") for r in records]


def _label_of(value: str, where: str) -> int:
    text = str(value).strip().lower()
    if text in ("1", "fake", "ai", "synthetic", "generated", "manipulated", "deepfake"):
        return FAKE
    if text in ("0", "real", "genuine", "authentic", "original"):
        return REAL
    raise DataError(f"{where}: label {value!r} is neither real nor fake (use real/fake or 0/1 with 1 = fake)")


def _split_dirs(root: Path) -> dict[str, Path]:
    """Subfolders named like train/valid/test that themselves hold class folders."""
    found = {}
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        name = SPLIT_ALIASES.get(child.name.lower())
        if child.is_dir() and name and any(class_of_folder(c.name) is not None for c in child.iterdir() if c.is_dir()):
            found[name] = child
    return found


def _from_split_dirs(root: Path, layout: str) -> Dataset:
    split: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    for name, folder in _split_dirs(root).items():
        split[name] = discover(folder)
    records = [r for part in split.values() for r in part]
    return Dataset(root, layout, records, split)


def _manifest(path: Path) -> Dataset:
    """``path,label[,group][,split]`` rows (CSV with a header, or JSON lines); paths relative to the file."""
    base = path.parent
    rows: list[dict[str, str]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DataError(f"{path}:{number}: not valid JSON") from None
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    if not rows or "path" not in rows[0] or "label" not in rows[0]:
        raise DataError(f"manifest {path} needs the columns path and label (optional: group, split)")
    records, groups, metadata = [], {}, {}
    split: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    has_split = "split" in rows[0]
    for number, row in enumerate(rows, 2):
        image = (base / str(row["path"])).resolve()
        record = ImageRecord(image, _label_of(row["label"], f"{path}:{number}"))
        records.append(record)
        if row.get("group") not in (None, ""):
            groups[image] = f"group:{row['group']}"
        extra = {
            k: str(v) for k, v in row.items() if k not in ("path", "label", "group", "split") and v not in (None, "")
        }
        if extra:
            metadata[image] = extra
        if has_split:
            name = SPLIT_ALIASES.get(str(row["split"]).strip().lower())
            if name is None:
                raise DataError(f"{path}:{number}: split {row['split']!r} is not train, val(id) or test")
            split[name].append(record)
    missing = [r.path for r in records if not r.path.is_file()]
    if missing:
        raise DataError(f"manifest {path}: {len(missing)} listed file(s) do not exist, e.g. {missing[0]}")
    return Dataset(base, "manifest", records, split if has_split else None, groups, metadata)


CIPLAB_DIFFICULTY = re.compile(r"^(easy|mid|hard)_", re.IGNORECASE)


def _ciplab(root: Path) -> Dataset:
    """CIPLAB "Real and Fake Face Detection": training_real/ and training_fake/, maybe twice over."""
    folders = sorted(p for p in root.rglob("training_real") if p.is_dir())
    records: list[ImageRecord] = []
    seen: dict[str, Path] = {}
    duplicates = 0
    for real_dir in folders:
        for folder, label in ((real_dir, REAL), (real_dir.parent / "training_fake", FAKE)):
            if not folder.is_dir():
                continue
            for path in iter_images(folder):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest in seen:
                    duplicates += 1
                    continue
                seen[digest] = path
                records.append(ImageRecord(path, label))
    metadata = {}
    for record in records:
        match = CIPLAB_DIFFICULTY.match(record.path.name)
        if record.label == FAKE and match:
            metadata[record.path] = {"difficulty": match.group(1).lower()}
        elif record.label == REAL:
            metadata[record.path] = {"difficulty": "real"}
    notes = [f"{len(folders)} copies of the set found; {duplicates} duplicate file(s) dropped"] if duplicates else []
    return Dataset(root, "ciplab-real-and-fake-face", records, None, {}, metadata, notes)


def detect_layout(root: Path) -> str:
    if root.is_file() and root.suffix in MANIFEST_SUFFIXES:
        return "manifest"
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    nested_140k = root / "real_vs_fake" / "real-vs-fake"
    if nested_140k.is_dir() or (root / "real-vs-fake").is_dir() or root.name == "real-vs-fake":
        return "140k-real-and-fake-faces"
    if any(p.is_dir() for p in root.rglob("training_real")) and not any(
        class_of_folder(c.name) is not None and c.name.lower() in ("real", "fake") for c in root.iterdir()
    ):
        return "ciplab-real-and-fake-face"
    if _split_dirs(root):
        names = {c.name for c in root.iterdir()}
        return "deepfake-and-real-images" if {"Train", "Test"} <= names else "split-folders"
    manifests = [p for p in root.iterdir() if p.name in ("manifest.csv", "manifest.jsonl")]
    if manifests:
        return "manifest"
    return "class-folders"


def open_dataset(path: str | Path) -> Dataset:
    """Load any supported layout; raises :class:`DataError` with what was expected when none fits."""
    root = Path(path).expanduser().resolve()
    layout = detect_layout(root)
    if layout == "manifest":
        file = root if root.is_file() else next(p for p in sorted(root.iterdir()) if p.stem == "manifest")
        return _manifest(file)
    if layout == "140k-real-and-fake-faces":
        base = next(p for p in (root / "real_vs_fake" / "real-vs-fake", root / "real-vs-fake", root) if p.is_dir())
        return _from_split_dirs(base, layout)
    if layout == "ciplab-real-and-fake-face":
        return _ciplab(root)
    if layout in ("deepfake-and-real-images", "split-folders"):
        return _from_split_dirs(root, layout)
    return Dataset(root, layout, discover(root))


def describe(dataset: Dataset) -> str:
    counts = Counter(r.label for r in dataset.records)
    text = f"layout {dataset.layout}: {counts[REAL]} {CLASS_NAMES[REAL]}, {counts[FAKE]} {CLASS_NAMES[FAKE]}"
    if dataset.split:
        text += " (own split: " + ", ".join(f"{k} {len(v)}" for k, v in dataset.split.items() if v) + ")"
    return "; ".join([text, *dataset.notes])
