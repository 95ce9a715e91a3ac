"""Looking at a data set before training: per-class facts, duplicates and shortcuts.

Most inflated real-vs-fake results come from the data: one class saved at
another JPEG quality or size, near-duplicates on both sides of a split. This
module measures those properties per class and says in plain words when one
of them separates the classes on its own.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from facecheck.data.discovery import CLASS_NAMES, ImageRecord
from facecheck.data.images import MAX_PIXELS

# Near-duplicates: grey 32x32 thumbnails whose correlation is at least this.
# (Measured on ../shared/data: 64-bit perceptual hashes put different aligned
# faces 4 bits apart, while this finds the near-identical StyleGAN pairs at
# 0.95-0.99 and keeps distinct faces below 0.94.)
NEAR_DUPLICATE_CORRELATION = 0.95
THUMBNAIL = 32
# A property that alone classifies this well is a shortcut worth a warning.
SHORTCUT_SEPARATION = 0.9


@dataclass
class ImageFacts:
    path: str
    label: int
    sha256: str = ""
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    file_size: int = 0
    jpeg_quality: int | None = None
    has_exif: bool = False
    error: str | None = None


@lru_cache(maxsize=1)
def _reference_tables() -> dict[int, np.ndarray]:
    """Quantisation tables libjpeg writes at each quality, read back the way Pillow reports them."""
    tables = {}
    blank = Image.new("RGB", (16, 16))
    for quality in range(1, 101):
        buffer = io.BytesIO()
        blank.save(buffer, "JPEG", quality=quality)
        tables[quality] = np.array(Image.open(buffer).quantization[0], dtype=float)
    return tables


def estimate_jpeg_quality(quantization: dict[int, Any] | None) -> int | None:
    """The libjpeg quality whose standard luminance table is closest to the file's (None if no table)."""
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    table = np.array(quantization[0], dtype=float)
    references = _reference_tables()
    return min(references, key=lambda q: float(np.abs(references[q] - table).sum()))


def thumbnail_vector(image: Image.Image) -> np.ndarray:
    """Zero-mean, unit-length grey thumbnail: dot products of two are their correlation."""
    grey = image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    vector = np.asarray(grey, dtype=np.float32).ravel()
    vector -= vector.mean()
    return vector / (np.linalg.norm(vector) + 1e-6)


def image_facts(record: ImageRecord) -> tuple[ImageFacts, np.ndarray | None]:
    facts = ImageFacts(path=str(record.path), label=record.label)
    thumbnail = None
    try:
        data = record.path.read_bytes()
        facts.file_size = len(data)
        facts.sha256 = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as image:
            facts.format, facts.mode = image.format, image.mode
            facts.width, facts.height = image.size
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"too large ({image.width}x{image.height})")
            if image.format == "JPEG":
                facts.jpeg_quality = estimate_jpeg_quality(getattr(image, "quantization", None))
            facts.has_exif = bool(image.getexif())
            thumbnail = thumbnail_vector(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        facts.error = str(exc) or type(exc).__name__
    return facts, thumbnail


def collect_facts(records: list[ImageRecord], progress: bool = False) -> tuple[list[ImageFacts], list]:
    """Facts and thumbnails (None where unreadable) of every record, read in parallel threads."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=4) as pool:
        bar = tqdm(total=len(records), desc="inspecting", unit="img", disable=not progress, leave=False)
        pairs = []
        for pair in pool.map(image_facts, records):
            pairs.append(pair)
            bar.update()
        bar.close()
    return [facts for facts, _ in pairs], [thumbnail for _, thumbnail in pairs]


def _components(count: int, pairs: list[tuple[int, int]]) -> list[int]:
    """A group id (0, 1, ...) per item such that the two items of every pair share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, columns = zip(*pairs, strict=True) if pairs else ((), ())
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(count, count))
    return connected_components(graph, directed=False)[1].tolist()


def duplicate_groups(
    facts: list[ImageFacts], thumbnails: list, min_correlation: float = NEAR_DUPLICATE_CORRELATION
) -> list[int]:
    """A group id per image: identical bytes or thumbnails correlated above ``min_correlation`` share one."""
    pairs: list[tuple[int, int]] = []
    first_with_hash: dict[str, int] = {}
    for index, fact in enumerate(facts):
        if fact.sha256:
            pairs.append((index, first_with_hash.setdefault(fact.sha256, index)))
    usable = [i for i, t in enumerate(thumbnails) if t is not None]
    if usable:
        vectors = np.stack([thumbnails[i] for i in usable])
        # All pairs, a block of rows at a time so memory stays small.
        for start in range(0, len(vectors), 512):
            close = np.argwhere(vectors[start : start + 512] @ vectors.T >= min_correlation)
            pairs += [(usable[start + a], usable[b]) for a, b in close if start + a < b]
    return _components(len(facts), pairs)


def _separation_numeric(values: np.ndarray, labels: np.ndarray) -> float:
    """How well a number alone splits the classes: max(AUC, 1 - AUC)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(values)) < 2:
        return 0.5
    auc = roc_auc_score(labels, values)
    return max(auc, 1 - auc)


def _separation_categorical(values: list[Any], labels: np.ndarray) -> float:
    """Accuracy of predicting each image's class from the majority class of its category."""
    by_value: dict[Any, Counter[int]] = {}
    for value, label in zip(values, labels, strict=True):
        by_value.setdefault(value, Counter())[int(label)] += 1
    correct = sum(counter.most_common(1)[0][1] for counter in by_value.values())
    balanced_baseline = max(Counter(labels.tolist()).values()) / len(labels)
    accuracy = correct / len(labels)
    # Rescale so that the majority-class baseline maps to 0.5, like an AUC.
    return 0.5 + 0.5 * (accuracy - balanced_baseline) / max(1 - balanced_baseline, 1e-9)


def _describe(values: list[Any]) -> str:
    counts = Counter(values)
    if all(isinstance(v, (int, float)) for v in counts) and len(counts) > 3:
        array = np.array(values, dtype=float)
        return f"median {np.median(array):g} (10-90%: {np.percentile(array, 10):g}-{np.percentile(array, 90):g})"
    return ", ".join(f"{k} ({n})" for k, n in counts.most_common(3))


SHORTCUT_ADVICE = {
    "jpeg_quality": "re-encode every input at one quality (--normalize-jpeg Q) or train with robust augmentation",
    "file_size": "file size follows compression and resolution: normalise both before training",
    "size": "resize or crop both classes the same way (or crop faces) so that size carries no label",
    "width": "resize or crop both classes the same way (or crop faces) so that size carries no label",
    "height": "resize or crop both classes the same way (or crop faces) so that size carries no label",
    "format": "convert both classes to one format",
    "mode": "convert both classes to one colour mode",
    "has_exif": "strip metadata or make sure the model never sees it; the format of the source differs by class",
}


def shortcut_warnings(facts: list[ImageFacts]) -> list[dict[str, Any]]:
    usable = [f for f in facts if f.error is None]
    if len({f.label for f in usable}) < 2:
        return []
    labels = np.array([f.label for f in usable])
    warnings = []
    properties: dict[str, list[Any]] = {
        "jpeg_quality": [f.jpeg_quality for f in usable],
        "file_size": [f.file_size for f in usable],
        "width": [f.width for f in usable],
        "height": [f.height for f in usable],
        "size": [f"{f.width}x{f.height}" for f in usable],
        "format": [f.format for f in usable],
        "mode": [f.mode for f in usable],
        "has_exif": [f.has_exif for f in usable],
    }
    for name, values in properties.items():
        if name == "jpeg_quality" and any(v is None for v in values):
            values = [-1 if v is None else v for v in values]
        numeric = name in ("jpeg_quality", "file_size", "width", "height")
        separation = (
            _separation_numeric(np.array(values, dtype=float), labels)
            if numeric
            else _separation_categorical(values, labels)
        )
        if separation >= SHORTCUT_SEPARATION:
            per_class = {
                CLASS_NAMES[c]: _describe([v for v, label in zip(values, labels, strict=True) if label == c])
                for c in (0, 1)
            }
            warnings.append(
                {
                    "property": name,
                    "separation": round(float(separation), 3),
                    "per_class": per_class,
                    "message": (
                        f"{name.replace('_', ' ')} alone separates the classes "
                        f"({separation:.0%} of the way from chance to perfect; real: {per_class['real']}; "
                        f"fake: {per_class['fake']}). A model can learn this instead of the faces: "
                        f"{SHORTCUT_ADVICE[name]}."
                    ),
                }
            )
    return warnings


def inspect_records(records: list[ImageRecord], root: Path, progress: bool = False) -> dict[str, Any]:
    facts, thumbnails = collect_facts(records, progress)
    groups = duplicate_groups(facts, thumbnails)
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    duplicate_sets = []
    for indices in members.values():
        if len(indices) < 2:
            continue
        exact = len({facts[i].sha256 for i in indices}) == 1
        classes = sorted({CLASS_NAMES[facts[i].label] for i in indices})
        duplicate_sets.append(
            {
                "kind": "exact" if exact else "near",
                "classes": classes,
                "across_classes": len(classes) > 1,
                "paths": [_relative(facts[i].path, root) for i in indices],
            }
        )
    per_class = {}
    for label, name in enumerate(CLASS_NAMES):
        subset = [f for f in facts if f.label == label and f.error is None]
        qualities = [f.jpeg_quality for f in subset if f.jpeg_quality is not None]
        sizes = np.array([f.file_size for f in subset]) if subset else np.zeros(1)
        per_class[name] = {
            "count": sum(f.label == label for f in facts),
            "unreadable": sum(f.label == label and f.error is not None for f in facts),
            "sizes": dict(Counter(f"{f.width}x{f.height}" for f in subset).most_common(5)),
            "formats": dict(Counter(f.format for f in subset)),
            "modes": dict(Counter(f.mode for f in subset)),
            "jpeg_quality": {
                "median": float(np.median(qualities)) if qualities else None,
                "histogram": dict(sorted(Counter(qualities).items())),
            },
            "with_exif": sum(f.has_exif for f in subset),
            "file_size_bytes": {
                "median": float(np.median(sizes)),
                "p10": float(np.percentile(sizes, 10)),
                "p90": float(np.percentile(sizes, 90)),
            },
        }
    return {
        "root": str(root),
        "n": len(facts),
        "per_class": per_class,
        "duplicates": {
            "exact_sets": sum(d["kind"] == "exact" for d in duplicate_sets),
            "near_sets": sum(d["kind"] == "near" for d in duplicate_sets),
            "across_classes": sum(d["across_classes"] for d in duplicate_sets),
            "images_in_sets": sum(len(d["paths"]) for d in duplicate_sets),
            "sets": duplicate_sets,
        },
        "shortcuts": shortcut_warnings(facts),
        "unreadable": [{"path": f.path, "error": f.error} for f in facts if f.error],
        "facts": [asdict(f) for f in facts],
        "groups": groups,
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, info in report["per_class"].items():
        quality = info["jpeg_quality"]["median"]
        lines.append(
            f"{name}: {info['count']} images; sizes {', '.join(f'{k} ({v})' for k, v in info['sizes'].items())}; "
            f"formats {', '.join(f'{k} ({v})' for k, v in info['formats'].items())}; "
            f"JPEG quality median {'n/a' if quality is None else f'{quality:g}'}; "
            f"median file {info['file_size_bytes']['median'] / 1024:.1f} KiB; EXIF in {info['with_exif']}"
        )
    duplicates = report["duplicates"]
    lines.append(
        f"duplicates: {duplicates['exact_sets']} exact and {duplicates['near_sets']} near-duplicate sets "
        f"({duplicates['images_in_sets']} images; {duplicates['across_classes']} sets span both classes)"
    )
    for warning in report["shortcuts"]:
        lines.append("WARNING: " + warning["message"])
    if not report["shortcuts"]:
        lines.append("no single property (JPEG quality, size, format, mode, EXIF, file size) separates the classes")
    return lines


def _relative(path: str, root: Path) -> str:
    resolved = Path(path).resolve()
    return str(resolved.relative_to(root.resolve())) if resolved.is_relative_to(root.resolve()) else path


def merge_groups(*labelings: list | None) -> list[int] | None:
    """One group id per image such that images sharing a group in any labelling share one here."""
    present = [labels for labels in labelings if labels is not None]
    if not present:
        return None
    pairs: list[tuple[int, int]] = []
    for labels in present:
        first: dict = {}
        pairs += [(index, first.setdefault(label, index)) for index, label in enumerate(labels)]
    return _components(len(present[0]), pairs)
