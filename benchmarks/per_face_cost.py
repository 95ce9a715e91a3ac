"""What judging faces costs: the shipped models file to verdict, and the face detector alone, on the same images.

    .venv/bin/python benchmarks/per_face_cost.py                    # 200 held-out shared images, both releases
    .venv/bin/python benchmarks/per_face_cost.py --images 400 --backend torch

Each variant runs once over the same images (a warm-up on a few others first), with a fresh face-detection
cache, so every detection is made, not read back. Variants: each shipped model's `predict` (file to verdict,
its own views, `--backend`), and MTCNN alone (`detect_faces` on the picture). Reports images/s and
ms per image, and each model's time as a ratio to the first (the previous release: "today's whole-picture
prediction"). One process, nothing else should run: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def images(count: int) -> list[Path]:
    """``count`` images spread over the shared sources (every k-th file of each, sorted: deterministic)."""
    from facecheck.data.discovery import iter_images

    sources = sorted(p for p in SHARED.iterdir() if p.is_dir())
    chosen: list[Path] = []
    for source in sources:
        found = iter_images(source)
        step = max(1, len(found) // max(1, count // len(sources)))
        chosen += found[::step][: count // len(sources)]
    return chosen[:count]


def fresh_cache() -> None:
    os.environ["FACECHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="facecheck-cost-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--backend", default="auto", help="engine of each model (default auto, as predict)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"per_face_cost: the shared data are absent ({SHARED}); nothing to measure")
        return 2
    fresh_cache()
    import torch

    from facecheck.api import load
    from facecheck.data.faces import detect_faces
    from facecheck.data.images import load_image
    from facecheck.inference.release import releases

    paths = images(args.images + 8)
    warm, timed = paths[:8], paths[8:]
    rows = []
    for name in sorted(releases()):
        detector = load(name, backend=args.backend)
        detector.predict(warm)
        fresh_cache()
        started = time.perf_counter()
        results = detector.predict(timed)
        seconds = time.perf_counter() - started
        faces = sum(len(r.faces or []) for r in results)
        rows.append({"variant": f"{name} predict ({detector.backend}, views {detector.tta})", "seconds": seconds,
                     "faces_judged": faces if results[0].faces is not None else None})  # fmt: skip
    pictures = [load_image(p) for p in timed]
    detect_faces(load_image(warm[0]), use_cache=False)
    started = time.perf_counter()
    for picture in pictures:
        detect_faces(picture, use_cache=False)
    rows.append({"variant": "MTCNN alone (detect_faces, decoded pictures)", "seconds": time.perf_counter() - started})
    base = rows[0]["seconds"]
    for row in rows:
        row["images_per_s"] = len(timed) / row["seconds"]
        row["ms_per_image"] = 1000 * row["seconds"] / len(timed)
        row["ratio_to_first"] = row["seconds"] / base
    conditions = {"images": len(timed), "machine": platform.processor() or platform.machine(),
                  "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()}  # fmt: skip
    print(json.dumps(conditions))
    for row in rows:
        print(f"{row['variant']:<60} {row['images_per_s']:7.1f} img/s  {row['ms_per_image']:7.1f} ms/img  "
              f"x{row['ratio_to_first']:.2f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"conditions": conditions, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
