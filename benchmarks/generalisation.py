"""Generalisation benchmark: the general preset trained on every shared source, then leave-one-source-out.

Usage (from the repository root, after `make venv`):

    .venv/bin/python benchmarks/generalisation.py --out runs/bench-general
    .venv/bin/python benchmarks/generalisation.py --preset lite0-native-jpeg --skip-all --out runs/bench-loo-lite0

Step 1 trains the preset on all sources together (the shipped model is made from this run by
`make model`); step 2 runs `crosseval --leave-one-out`: for each source, train on the others and test
on every image of the one left out, plus the in-domain test splits and their ROC AUC at JPEG 50.
Finished runs are reused, so an interrupted benchmark continues where it stopped. Writes
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help=f"sources (default: {', '.join(SOURCES)} under {SHARED})")
    parser.add_argument("--preset", default="general-sbi-lite0")
    parser.add_argument("--out", default="runs/bench-general")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-all", action="store_true", help="skip step 1 (training on all sources)")
    parser.add_argument("--skip-loo", action="store_true", help="skip step 2 (leave-one-source-out)")
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
    if not args.skip_loo:
        started = time.perf_counter()
        loo = leave_one_out(config, data, out / "loo", progress=sys.stderr.isatty())
        report["leave_one_out"] = loo | {"wall_seconds_this_call": time.perf_counter() - started}
        print((out / "loo" / "leave-one-out.md").read_text())
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
