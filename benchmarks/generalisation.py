"""Generalisation benchmark: the general preset trained on every shared source, then leave-one-source-out.

Usage (from the repository root, after `make venv`):

    .venv/bin/python benchmarks/generalisation.py --out runs/bench-general
    .venv/bin/python benchmarks/generalisation.py --preset lite0-native-jpeg --skip-all --out runs/bench-loo-lite0

Step 1 trains the preset on all sources together (the shipped model is made from this run by
`make model`); step 2 runs `crosseval --leave-one-out`: for each source, train on the others and test
on every image of the one left out, plus the in-domain test splits and their ROC AUC at JPEG 50.
Step 3 (``--large-images N``, on by default) checks the resize rule on large photographs: N test
images per class and source of the step-1 run are enlarged (bicubic) to a long side of 1024 and of
4000 pixels and saved as JPEG 95, as a camera or generator would hand them over; the model must give
them the verdicts it gives the native images (ROC AUC and the change in p_fake), not judge a central
patch. Finished runs are reused, so an interrupted benchmark continues where it stopped. Writes
`OUT/benchmark.json` with the machine, settings and timings. Exits 2 (saying so) without the data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = ("ffhq-stylegan", "lfw-faceswap", "dfdc-faces")
LARGE_SIDES = (1024, 4000)  # a generator's 1024 px output; a phone photograph


def machine() -> dict[str, object]:
    import torch

    flags = ""
    if Path("/proc/cpuinfo").is_file():
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    ) if Path("/proc/cpuinfo").is_file() else platform.processor()  # fmt: skip
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "bf16_native": "avx512_bf16" in flags or "amx_bf16" in flags,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def large_images(run_dir: Path, out: Path, per_class: int) -> dict[str, object]:
    """Scores of native test images against their enlarged copies (see the module's docstring)."""
    import numpy as np
    from PIL import Image

    from facecheck.data.sources import resolve_data_dirs, resolve_data_root, source_of
    from facecheck.evaluation.metrics import classification_metrics
    from facecheck.inference.predictor import Detector
    from facecheck.run_folder import RunFolder

    run = RunFolder(run_dir)
    config = run.load_config()
    test = run.read_split(resolve_data_root(config, lambda _message: None))["test"]
    data_dirs = resolve_data_dirs(config, lambda _message: None)
    chosen = []
    for source in sorted({source_of(r.path, data_dirs) for r in test}):
        for label in (0, 1):
            chosen += [r for r in test if source_of(r.path, data_dirs) == source and r.label == label][:per_class]
    folder = out / "large-images"
    paths: dict[str, list[Path]] = {"native": [r.path for r in chosen]}
    for side in LARGE_SIDES:
        paths[str(side)] = []
        for index, record in enumerate(chosen):
            target = folder / str(side) / f"{index:04d}.jpg"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(record.path) as image:
                    image = image.convert("RGB")
                    scale = side / max(image.size)
                    size = (round(image.width * scale), round(image.height * scale))
                    image.resize(size, Image.Resampling.BICUBIC).save(target, quality=95)
            paths[str(side)].append(target)
    detector = Detector.load(run_dir)
    labels = np.array([r.label for r in chosen])
    scores = {name: np.array([p.p_fake for p in detector.predict(files)]) for name, files in paths.items()}
    result: dict[str, object] = {"images": len(chosen), "preprocess": detector.card.preprocess.resize}
    for name, p_fake in scores.items():
        metrics = classification_metrics(labels, p_fake, detector.card.threshold)
        change = np.abs(p_fake - scores["native"])
        result[name] = {
            "roc_auc": metrics["roc_auc"],
            "accuracy": metrics["accuracy"],
            "median_abs_p_fake_change": float(np.median(change)),
            "max_abs_p_fake_change": float(change.max()),
        }
        print(
            f"large images {name:>6}: ROC AUC {metrics['roc_auc']:.3f}, accuracy {metrics['accuracy']:.3f}, "
            f"p_fake change vs native median {np.median(change):.4f} max {change.max():.4f}"
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help=f"sources (default: {', '.join(SOURCES)} under {SHARED})")
    parser.add_argument("--preset", default="general-sbi-lite0")
    parser.add_argument("--out", default="runs/bench-general")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-all", action="store_true", help="skip step 1 (training on all sources)")
    parser.add_argument("--skip-loo", action="store_true", help="skip step 2 (leave-one-source-out)")
    parser.add_argument("--held-out", action="append", metavar="NAME", help="step 2: only the fold leaving out NAME")
    parser.add_argument(
        "--large-images", type=int, default=40, help="step 3: test images per class and source (0: skip)"
    )
    args = parser.parse_args()
    data = args.data or [str(SHARED / name) for name in SOURCES]
    missing = [d for d in data if not Path(d).is_dir()]
    if missing:
        print(f"generalisation benchmark: data not found: {', '.join(missing)} (the shared data sets are absent)")
        return 2

    from facecheck.config import get_preset, merge, parse_override
    from facecheck.experiments import leave_one_out
    from facecheck.training.trainer import train

    config = get_preset(args.preset)
    for text in args.overrides:
        config = merge(config, parse_override(text))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {
        "machine": machine(),
        "preset": args.preset,
        "overrides": args.overrides,
        "sources": [Path(d).name for d in data],
        "started": time.strftime("%FT%TZ", time.gmtime()),
    }
    if not args.skip_all:
        run_dir = out / "all-sources"
        started = time.perf_counter()
        if not (run_dir / "summary.json").is_file():
            resume = (run_dir / "config.yaml").is_file()
            train(merge(config, {"data": {"data_dir": [str(Path(d).resolve()) for d in data]}}), run_dir, resume=resume)
        summary = json.loads((run_dir / "summary.json").read_text())
        report["all_sources"] = {
            "run": str(run_dir),
            "wall_seconds_this_call": time.perf_counter() - started,
            "train_seconds": summary.get("train_seconds"),
            "test": {k: summary["test"].get(k) for k in ("roc_auc", "accuracy", "n")},
        }
        (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.large_images and (out / "all-sources" / "summary.json").is_file():
        report["large_images"] = large_images(out / "all-sources", out, args.large_images)
        (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.skip_loo:
        started = time.perf_counter()
        loo = leave_one_out(config, data, out / "loo", progress=sys.stderr.isatty(), held_out=args.held_out)
        report["leave_one_out"] = loo | {"wall_seconds_this_call": time.perf_counter() - started}
        print((out / "loo" / "leave-one-out.md").read_text())
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
