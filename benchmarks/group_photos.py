"""Which face of a group photo is fake? Per-face verdicts on pictures pasted together from the shared data.

    .venv/bin/python benchmarks/group_photos.py                       # the shipped model, 200 canvases
    .venv/bin/python benchmarks/group_photos.py --model runs/X --canvases 400 --out runs/group-photos

Each canvas holds two to four face pictures side by side: one fake and the rest real, all from one source's
held-out test split (the run's split.csv when the model is a run folder; for the shipped model, the split
recorded with its card's recipe is rebuilt by `make model`, so give --split RUN/split.csv or every image is
used). Per canvas the model's per-face verdicts are read; the issue's measure is: among canvases where the
model flags exactly one face as fake, the share where that face is the fake one. Also reported: canvases where
the fake face is flagged at all, where some real face is flagged, and where the number of faces found is right.
Images are drawn with a fixed seed; nothing is written beside the data.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SOURCES = ("ffhq-stylegan", "lfw-faceswap", "dfdc-faces", "diffusion-portraits", "inswapper-faces")
TILE = 256


def held_out_images(split: Path | None) -> dict[str, dict[int, list[Path]]]:
    """Per source, per label (0 real, 1 fake), the images to draw from: a split file's test part, or all."""
    from facecheck.data.layouts import open_dataset

    chosen: dict[str, dict[int, list[Path]]] = {}
    test: set[Path] | None = None
    if split is not None:
        with open(split, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        base = SHARED
        test = {(base / row["path"]).resolve() for row in rows if row["split"] == "test"}
    for source in SOURCES:
        folder = SHARED / source
        if not folder.is_dir():
            continue
        records = open_dataset(folder).records
        usable = [r for r in records if test is None or r.path.resolve() in test]
        chosen[source] = {label: [r.path for r in usable if r.label == label] for label in (0, 1)}
    return chosen


def canvas(paths: list[Path]) -> Image.Image:
    from facecheck.data.images import load_image

    picture = Image.new("RGB", (len(paths) * (TILE + 32) + 32, TILE + 64), (120, 120, 120))
    for index, path in enumerate(paths):
        picture.paste(load_image(path).resize((TILE, TILE)), (32 + index * (TILE + 32), 32))
    return picture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="run folder, checkpoint or shipped model name (default: the shipped one)")
    parser.add_argument("--split", type=Path, help="split.csv whose test part to draw from (default: the run's)")
    parser.add_argument("--canvases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for group-photos.json and a few example canvases")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"group_photos: the shared data are absent ({SHARED}); nothing to measure")
        return 2

    import facecheck

    detector = facecheck.load(args.model)
    if not detector.preprocess.face_crop:
        print("group_photos: this model judges whole pictures, not faces (its card has no face crop)")
        return 2
    split = args.split
    if split is None and args.model and (Path(args.model) / "split.csv").is_file():
        split = Path(args.model) / "split.csv"
    pools = held_out_images(split)
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for number in range(args.canvases):
        source = rng.choice([s for s in pools if pools[s][0] and pools[s][1]])
        count = rng.randint(2, 4)
        reals = rng.sample(pools[source][0], count - 1)
        fake_at = rng.randrange(count)
        paths = [*reals[:fake_at], rng.choice(pools[source][1]), *reals[fake_at:]]
        picture = canvas(paths)
        result = detector.predict([np.asarray(picture)])[0]
        faces = result.faces or []
        # A face belongs to the tile its box centre falls in.
        tiles = [int(((f.box[0] + f.box[2]) / 2 - 16) // (TILE + 32)) for f in faces]
        flagged = {tile for tile, face in zip(tiles, faces, strict=True) if face.label == "fake"}
        rows.append({"source": source, "faces_expected": count, "faces_found": len(faces), "fake_tile": fake_at,
                     "flagged_tiles": sorted(flagged)})  # fmt: skip
        if args.out and number < 4:
            args.out.mkdir(parents=True, exist_ok=True)
            picture.save(args.out / f"canvas-{number}.jpg", quality=90)
        print(f"\r{number + 1}/{args.canvases}", end="", file=sys.stderr)
    print(file=sys.stderr)
    alone = [r for r in rows if len(r["flagged_tiles"]) == 1]
    summary = {
        "model": detector.source,
        "canvases": len(rows),
        "seed": args.seed,
        "split": str(split) if split else "every image",
        "faces_found_right": float(np.mean([r["faces_found"] == r["faces_expected"] for r in rows])),
        "fake_flagged": float(np.mean([r["fake_tile"] in r["flagged_tiles"] for r in rows])),
        "some_real_flagged": float(np.mean([any(t != r["fake_tile"] for t in r["flagged_tiles"]) for r in rows])),
        "one_face_flagged": len(alone),
        "one_face_flagged_is_the_fake": (
            float(np.mean([r["flagged_tiles"] == [r["fake_tile"]] for r in alone])) if alone else None
        ),
        "seconds_per_canvas": (time.perf_counter() - started) / max(len(rows), 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        (args.out / "group-photos.json").write_text(json.dumps(summary | {"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
