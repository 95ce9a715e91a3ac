"""What the face search's smallest face costs and changes: the default model's verdicts at several sizes.

    python benchmarks/face_search_size.py --split runs/model-build-v2/split.csv   # the release run's test split
    python benchmarks/face_search_size.py --every 8                               # every 8th file of ../shared/data

MTCNN scans an image pyramid whose finest level finds faces from ``min_face_size`` px up; each coarser level
multiplies that by 1/0.709. facecheck judges faces from 32 px (``facecheck.data.faces.MIN_FACE_SIDE``), so it
starts one level coarser than facenet's default of 20 px (``SEARCH_MIN_FACE``). This runs the default model's
whole ``predict`` (JPEG normalisation, face search with the compiled networks, every judged face's crop, float32
network) on the same pictures with the search starting at 20 px (facenet's default), 28.2 px (one level
coarser: facecheck's) and 39.8 px (two), and reports for each against 20 px: pictures whose judged faces
changed, pictures that lost every face, verdicts that changed, p_fake moves, ROC AUC per source and images/s
(in this process, the face cache off). Results: ``OUT/face_search_size.json`` and ``.md``.
Without ``../shared/data`` (and no ``--data``) it stops and says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SIZES = (20.0, 20 / 0.709, 20 / 0.709**2)


def pictures(args: argparse.Namespace) -> list[tuple[Path, str, str]]:
    """(path, label, source) of the pictures to score."""
    if args.split:
        rows = [row for row in csv.DictReader(args.split.open()) if row["split"] == "test"]
        root = args.data[0] if args.data else SHARED
        found = [(root / row["path"], row["label"], row["path"].split("/")[0]) for row in rows]
        return found[:: args.every]
    chosen = []
    for folder in args.data or sorted(p for p in SHARED.iterdir() if p.is_dir()):
        for label in ("real", "fake"):
            files = sorted(p for p in (folder / label).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            chosen += [(path, label, folder.name) for path in files[:: args.every]]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", help="folders with real/ and fake/ (default: all "
                        "of ../shared/data); with --split: the folder the split's paths are relative to")  # fmt: skip
    parser.add_argument("--split", type=Path, help="a run's split.csv: its test rows are scored")
    parser.add_argument("--every", type=int, default=1, help="every Nth picture (default: all)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/face-search-size"))
    args = parser.parse_args()
    if not args.data and not SHARED.is_dir():
        raise SystemExit(f"no data: {SHARED} is not here (give --data FOLDER with real/ and fake/)")
    if args.split and not args.split.is_file():
        parser.error(f"--split {args.split}: no such file")
    from sklearn.metrics import roc_auc_score

    from facecheck.data import faces
    from facecheck.inference.predictor import Detector

    chosen = pictures(args)
    if not chosen:
        raise SystemExit("no pictures found")
    paths = [path for path, _, _ in chosen]
    labels = np.array([label == "fake" for _, label, _ in chosen])
    sources = np.array([source for _, _, source in chosen])
    detect = faces.detect_faces_batch

    def uncached(images: list[Any], use_cache: bool = True, fast: bool = False) -> list[Any]:
        return detect(images, use_cache=False, fast=fast)  # every variant searches: none reads another's faces

    faces.detect_faces_batch = uncached
    detector = Detector.load(None, backend="auto")
    mtcnn = faces._get_detector(fast=True)
    runs: dict[float, dict[str, Any]] = {}
    for size in SIZES:
        mtcnn.min_face_size = size
        start = time.perf_counter()
        predictions = detector.predict(paths, provenance=False, progress=True)
        elapsed = time.perf_counter() - start
        runs[size] = {
            "p_fake": np.array([np.nan if p.p_fake is None else p.p_fake for p in predictions]),
            "label": np.array([str(p.label) for p in predictions]),
            "faces": [tuple(tuple(f.box) for f in p.faces or []) for p in predictions],
            "images_per_second": len(paths) / elapsed,
        }
        print(f"min face {size:.1f} px: {len(paths) / elapsed:.1f} images/s", flush=True)
    base = runs[SIZES[0]]
    rows = []
    for size, run in runs.items():
        moved = np.abs(run["p_fake"] - base["p_fake"])
        row = {
            "min_face_px": round(size, 1),
            "images_per_second": round(run["images_per_second"], 1),
            "judged_faces_changed": sum(a != b for a, b in zip(run["faces"], base["faces"], strict=True)),
            "lost_every_face": sum(not a and bool(b) for a, b in zip(run["faces"], base["faces"], strict=True)),
            "verdicts_changed": int((run["label"] != base["label"]).sum()),
            "p_fake_moved_over_0.01": int((moved > 0.01).sum()),
            "largest_p_fake_move": round(float(np.nanmax(moved)), 4),
            "roc_auc": {},
        }
        for source in sorted(set(sources)):
            mask = (sources == source) & np.isfinite(run["p_fake"])
            if len(set(labels[mask])) == 2:
                row["roc_auc"][source] = round(float(roc_auc_score(labels[mask], run["p_fake"][mask])), 4)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    conditions = {
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
        "pictures": len(paths),
        "selection": f"test rows of {args.split}" if args.split else "every file of the sources",
        "every": args.every,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    (args.out / "face_search_size.json").write_text(json.dumps({"conditions": conditions, "rows": rows}, indent=2))
    lines = [
        "# Face search size (benchmarks/face_search_size.py)",
        "",
        ", ".join(f"{k}: {v}" for k, v in conditions.items()),
        "",
        "| min face px | images/s | judged faces changed | lost every face | verdicts changed | p_fake moved > 0.01 "
        "| largest move | ROC AUC per source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        aucs = ", ".join(f"{k} {v}" for k, v in row["roc_auc"].items())
        lines.append(
            f"| {row['min_face_px']} | {row['images_per_second']} | {row['judged_faces_changed']} "
            f"| {row['lost_every_face']} | {row['verdicts_changed']} | {row['p_fake_moved_over_0.01']} "
            f"| {row['largest_p_fake_move']} | {aucs} |"
        )
    (args.out / "face_search_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
