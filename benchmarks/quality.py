"""Quality benchmark: the report's presets against the recommended one, where it counts, in one run.

    python benchmarks/quality.py                        # every preset on both shared sets
    python benchmarks/quality.py --presets seed-mobilenet,lite0-native-jpeg --epochs seed-mobilenet=5
    python benchmarks/quality.py --quick                # 40 images per class, 1 epoch: a smoke check

For every preset and every training set: train (wall time recorded), then
evaluate on every set: the diagonal is the trained set's leak-free held-out
test split, off the diagonal the whole other set, never seen in training.
Then, on each in-domain test split, the ROC AUC after re-encoding every test
image at JPEG quality 50; the single-image prediction latency (file in,
``p_fake`` out, batch 1); for the recommended preset every test-time
augmentation mode on the in-domain test splits, with its cost; and an ensemble of the recommended and the
report's MobileNetV2 models. Finished runs are reused when the benchmark is
run again into the same ``--out`` (delete a run folder to retrain it).

Writes ``OUT/quality.json`` and ``OUT/quality.md`` (machine, seeds, settings,
every table, and the issue's targets checked against the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facecheck.compute import describe_machine

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_SETS = [SHARED / "ffhq-stylegan", SHARED / "lfw-faceswap"]
REPORT_PRESETS = ["seed-cnn", "seed-mobilenet"]
BASELINE = "seed-mobilenet"
TTA_MODES = ["none", "flip", "five-crop", "five-crop-flip"]
JPEG_PERTURBATION = "jpeg:50"


def parse_epochs(entries: list[str]) -> dict[str, int]:
    epochs = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(f"--epochs takes PRESET=N, got {entry!r}")
        epochs[name] = int(value)
    return epochs


def train_once(preset: str, data_dir: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``preset`` on ``data_dir`` unless a finished run is already there; returns its timing."""
    from facecheck.api import train
    from facecheck.config import get_preset, merge, parse_override

    timing_file = run_dir / "bench-train.json"
    if timing_file.is_file() and (run_dir / "best.pt").is_file():
        return json.loads(timing_file.read_text()) | {"reused": True}
    overrides: dict[str, Any] = {
        "seed": args.seed,
        "data": {"data_dir": str(data_dir), "max_per_class": args.max_per_class},
        "compute": {"num_threads": args.threads},
    }
    if preset in args.epochs_of:
        overrides["epochs"] = args.epochs_of[preset]
    config = merge(get_preset(preset), overrides)
    for text in args.set:
        config = merge(config, parse_override(text))
    started = time.perf_counter()
    result = train(config, run_dir, quiet=not args.verbose)
    seconds = time.perf_counter() - started
    train_images = sum(1 for line in (run_dir / "split.csv").read_text().splitlines()[1:] if line.endswith(",train"))
    timing = {
        "seconds": seconds,
        "epochs": config.total_epochs,
        "train_images": train_images,
        "best_epoch": result.best_epoch,
    }
    timing_file.write_text(json.dumps(timing))
    return timing


def latency_ms(detector: Any, image: Path, repeats: int) -> dict[str, float]:
    """Median and p90 of one ``predict([file])`` call: decode, preprocess, views, network, calibration."""
    for _ in range(3):
        detector.predict([image])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        detector.predict([image])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))]}


def evaluate_on(detector: Any, data_dir: Path, perturb: bool) -> dict[str, Any]:
    from facecheck.api import evaluate
    from facecheck.evaluation.perturb import parse_perturbations

    started = time.perf_counter()
    result = evaluate(detector, data_dir, perturbations=parse_perturbations([JPEG_PERTURBATION]) if perturb else None)
    seconds = time.perf_counter() - started
    row = {
        "roc_auc": result["roc_auc"],
        "accuracy": result["accuracy"],
        "n": result["n"],
        "seconds": seconds,
        "tta": result.get("tta"),
    }
    if perturb:
        jpeg = result["perturbations"][JPEG_PERTURBATION]
        row["roc_auc_jpeg50"] = jpeg["roc_auc"]
        row["accuracy_jpeg50"] = jpeg["accuracy"]
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    from facecheck.api import load
    from facecheck.checkpoint import read_card, resolve_checkpoint_path
    from facecheck.config import RECOMMENDED_PRESET
    from facecheck.data.discovery import iter_images
    from facecheck.inference.ensemble import Ensemble

    sets = {Path(d).resolve().name: Path(d).resolve() for d in args.data}
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "settings": {
            "sets": {name: str(path) for name, path in sets.items()},
            "presets": args.presets,
            "epochs_overridden": args.epochs_of,
            "overrides": args.set,
            "seed": args.seed,
            "split_seed": 0,
            "max_per_class": args.max_per_class,
            "threads": args.threads,
            "backend": args.backend,
        },
        "training": {},
        "matrix": {},
        "latency": {},
        "tta": {},
        "ensemble": {},
    }
    for preset in args.presets:
        report["training"][preset], report["matrix"][preset] = {}, {}
        for train_name, train_dir in sets.items():
            run_dir = args.out / "runs" / preset / train_name
            print(f"-- {preset}: train on {train_name}", flush=True)
            report["training"][preset][train_name] = train_once(preset, train_dir, run_dir, args)
            detector = load(run_dir, backend=args.backend)
            report["matrix"][preset][train_name] = {}
            for test_name, test_dir in sets.items():
                row = evaluate_on(detector, test_dir, perturb=test_name == train_name)
                report["matrix"][preset][train_name][test_name] = row
                print(f"   tested on {test_name}: {json.dumps(row)}", flush=True)
        first_set = next(iter(sets))
        example = iter_images(sets[first_set])[0]
        detector = load(args.out / "runs" / preset / first_set, backend="torch")
        report["latency"][preset] = {"torch": latency_ms(detector, example, args.repeats)}
        if args.backend != "torch":
            onnx = load(args.out / "runs" / preset / first_set, backend=args.backend)
            report["latency"][preset][args.backend] = latency_ms(onnx, example, args.repeats)
        print(f"   latency: {json.dumps(report['latency'][preset])}", flush=True)
        save(report, args.out)

    if RECOMMENDED_PRESET in args.presets and not args.no_tta:
        for train_name in sets:
            run_dir = args.out / "runs" / RECOMMENDED_PRESET / train_name
            report["tta"][train_name] = {}
            crops = read_card(resolve_checkpoint_path(run_dir)).preprocess.crop_size is not None
            for mode in [m for m in TTA_MODES if crops or "five-crop" not in m]:  # five-crop needs a crop model
                detector = load(run_dir, backend=args.backend, tta=mode)
                # In-domain test split only: ten views of every cross-set image would cost more than the training.
                rows = {train_name: evaluate_on(detector, sets[train_name], perturb=False)}
                example = iter_images(sets[train_name])[0]
                rows["latency"] = latency_ms(detector, example, args.repeats)
                report["tta"][train_name][mode] = rows
                print(f"-- tta {mode} ({train_name}): {json.dumps(rows)}", flush=True)
            save(report, args.out)

    if RECOMMENDED_PRESET in args.presets and BASELINE in args.presets and not args.no_ensemble:
        for train_name in sets:
            members = [args.out / "runs" / p / train_name for p in (RECOMMENDED_PRESET, BASELINE)]
            ensemble = Ensemble.load(members, backend=args.backend)
            rows = {
                test_name: evaluate_on(ensemble, d, perturb=test_name == train_name) for test_name, d in sets.items()
            }
            rows["latency"] = latency_ms(ensemble, iter_images(sets[train_name])[0], args.repeats)
            report["ensemble"][train_name] = rows
            print(f"-- ensemble ({train_name}): {json.dumps(rows)}", flush=True)
    report["targets"] = check_targets(report)
    save(report, args.out)
    return report


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    from facecheck.config import RECOMMENDED_PRESET

    matrix = report["matrix"].get(RECOMMENDED_PRESET)
    if not matrix:
        return []
    checks = []
    floors = {"ffhq-stylegan": 0.99, "lfw-faceswap": 0.95}
    for name, floor in floors.items():
        if name in matrix:
            auc = matrix[name][name]["roc_auc"]
            checks.append({"target": f"in-domain ROC AUC on {name} >= {floor}", "value": auc, "met": auc >= floor})
    baseline = report["matrix"].get(BASELINE, {})
    for train_name, row in matrix.items():
        for test_name, cell in row.items():
            if test_name == train_name:
                drop = cell["roc_auc"] - cell["roc_auc_jpeg50"]
                checks.append(
                    {"target": f"JPEG-50 ROC AUC drop on {train_name} <= 0.02", "value": drop, "met": drop <= 0.02}
                )
            elif train_name in baseline:
                gain = cell["roc_auc"] - baseline[train_name][test_name]["roc_auc"]
                checks.append(
                    {
                        "target": f"cross-set {train_name} -> {test_name}: ROC AUC >= {BASELINE} + 0.05",
                        "value": gain,
                        "met": gain >= 0.05,
                    }
                )
    for train_name, timing in report["training"].get(RECOMMENDED_PRESET, {}).items():
        minutes = timing["seconds"] / 60
        checks.append(
            {
                "target": f"trains on {train_name} ({timing['train_images']} training images) in < 30 min",
                "value": minutes,
                "met": minutes < 30,
            }
        )
    latency = report["latency"].get(RECOMMENDED_PRESET, {})
    if latency:
        best = min(v["median_ms"] for v in latency.values())
        checks.append(
            {"target": "predicts one image in < 50 ms (median, best backend)", "value": best, "met": best < 50}
        )
    return checks


def markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    sets = list(s["sets"])
    lines = [
        "# Quality benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores, {m['memory_gib']} GiB, native bf16: {m['native_bf16']}, "
        f"CUDA: {m['cuda']}; Python {m['python']}, torch {m['torch']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; {m['date']}.",
        f"Seeds: training {s['seed']}, split {s['split_seed']}; epochs overridden: {s['epochs_overridden'] or 'none'}; "
        f"max per class: {s['max_per_class'] or 'all'}; threads: {s['threads'] or 'all'}; backend: {s['backend']}; "
        f"other overrides: {', '.join(s['overrides']) or 'none'}.",
        "Diagonal: the trained set's leak-free held-out test split; elsewhere: every image of the other set.",
        "",
        "## Cross-set ROC AUC",
        "",
        "| preset | trained on | " + " | ".join(f"tested on {t}" for t in sets) + " |",
        "|---|---" + "|---:" * len(sets) + "|",
    ]
    for preset, rows in report["matrix"].items():
        for train_name, row in rows.items():
            cells = [f"{row[t]['roc_auc']:.3f}" if t in row else "" for t in sets]
            lines.append(f"| {preset} | {train_name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## JPEG robustness (in-domain test split re-encoded at quality 50)",
        "",
        "| preset | set | ROC AUC | ROC AUC at JPEG 50 | drop | accuracy | accuracy at JPEG 50 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for preset, rows in report["matrix"].items():
        for train_name, row in rows.items():
            c = row[train_name]
            lines.append(
                f"| {preset} | {train_name} | {c['roc_auc']:.3f} | {c['roc_auc_jpeg50']:.3f} | "
                f"{c['roc_auc'] - c['roc_auc_jpeg50']:+.3f} | {c['accuracy']:.3f} | {c['accuracy_jpeg50']:.3f} |"
            )
    lines += [
        "",
        "## Training time and prediction latency",
        "",
        "| preset | trained on | training images | epochs | best epoch | wall minutes "
        "| one-image predict (ms, median / p90) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for preset, rows in report["training"].items():
        latency = report["latency"].get(preset, {})
        shown = "; ".join(f"{k} {v['median_ms']:.1f} / {v['p90_ms']:.1f}" for k, v in latency.items())
        for train_name, t in rows.items():
            reused = " (reused)" if t.get("reused") else ""
            lines.append(
                f"| {preset} | {train_name} | {t['train_images']} | {t['epochs']} | {t['best_epoch']} | "
                f"{t['seconds'] / 60:.1f}{reused} | {shown if train_name == sets[0] else ''} |"
            )
    if report["tta"]:
        lines += [
            "",
            "## Test-time augmentation (recommended preset)",
            "",
            "| trained and tested on (test split) | views | ROC AUC | accuracy | one-image ms | s per 1,000 images |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for train_name, modes in report["tta"].items():
            for mode, rows in modes.items():
                row = rows[train_name]
                per_thousand = 1000 * row["seconds"] / row["n"]
                lines.append(
                    f"| {train_name} | {mode} | {row['roc_auc']:.3f} | {row['accuracy']:.3f} | "
                    f"{rows['latency']['median_ms']:.1f} | {per_thousand:.0f} |"
                )
    if report["ensemble"]:
        lines += [
            "",
            f"## Ensemble: mean calibrated p_fake of the recommended preset and {BASELINE}",
            "",
            "| trained on | "
            + " | ".join(f"ROC AUC on {t}" for t in sets)
            + " | in-domain at JPEG 50 | one-image ms |",
            "|---|" + "---:|" * (len(sets) + 2),
        ]
        for train_name, rows in report["ensemble"].items():
            cells = [f"{rows[t]['roc_auc']:.3f}" for t in sets]
            lines.append(
                f"| {train_name} | " + " | ".join(cells) + f" | {rows[train_name]['roc_auc_jpeg50']:.3f} | "
                f"{rows['latency']['median_ms']:.1f} |"
            )
    if report.get("targets"):
        lines += ["", "## Targets (issue 7)", "", "| target | measured | met |", "|---|---:|---|"]
        for check in report["targets"]:
            lines.append(f"| {check['target']} | {check['value']:.3f} | {'yes' if check['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def save(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    if report["matrix"] and all(report["matrix"].values()):
        (out / "quality.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    from facecheck.config import RECOMMENDED_PRESET

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", action="append", help="labelled sets (default: ../shared/data/{ffhq-stylegan,lfw-faceswap})"
    )
    parser.add_argument("--presets", default=",".join([*REPORT_PRESETS, RECOMMENDED_PRESET]))
    parser.add_argument("--epochs", action="append", default=[], metavar="PRESET=N", help="override a preset's epochs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-class", type=int)
    parser.add_argument("--threads", type=int, default=0, help="0: all available cores")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx", "openvino"))
    parser.add_argument("--repeats", type=int, default=30, help="timed single-image predictions per latency figure")
    parser.add_argument("--no-tta", action="store_true", help="skip the test-time augmentation table")
    parser.add_argument("--no-ensemble", action="store_true", help="skip the ensemble table")
    parser.add_argument("--quick", action="store_true", help="40 images per class, 1 epoch: a smoke check")
    parser.add_argument("--verbose", action="store_true", help="show training progress")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results-quality"))
    args = parser.parse_args(argv)
    args.data = args.data or [str(d) for d in DEFAULT_SETS]
    args.presets = [p for p in args.presets.split(",") if p]
    args.epochs_of = parse_epochs(args.epochs)
    if args.quick:
        args.max_per_class = args.max_per_class or 40
        args.epochs_of = {p: 1 for p in args.presets} | args.epochs_of
        args.repeats = min(args.repeats, 5)
    missing = [d for d in args.data if not Path(d).is_dir()]
    if missing:
        print(f"quality benchmark: data folder(s) absent: {', '.join(missing)}; pass --data DIR (twice or more)")
        return 2
    if len(args.data) < 2:
        print("quality benchmark: needs two or more --data sets for the cross-set matrix")
        return 2
    os.environ.setdefault("FACECHECK_CACHE_DIR", tempfile.mkdtemp(prefix="facecheck-quality-cache-"))
    report = run(args)
    print()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
