"""Leave-one-source-out for several recipes at once: which ideas pay on kinds of fake never seen.

    .venv/bin/python benchmarks/loo_grid.py --out runs/loo-grid                      # every recipe, one at a time
    .venv/bin/python benchmarks/loo_grid.py --recipes general,general-sbi-resynth --out runs/loo-grid
    .venv/bin/python benchmarks/loo_grid.py --recipes general,general-resynth --held-out dfdc-faces --out runs/g
    python3 benchmarks/loo_grid.py --parallel 4 --workers 3 --deadline 540 --out /tmp/grid   # a GPU machine

Each recipe is a preset plus overrides (:data:`RECIPES`); each runs `benchmarks/generalisation.py
--skip-all --large-images 0` (train on all sources but one, test on every image of the one left out,
plus the in-domain test splits and their ROC AUC at JPEG 50) in its own process, ``--parallel`` at a
time, its output in ``OUT/<recipe>/log.txt``. Finished folds and their scores are kept, so a rerun continues where an
earlier one stopped. ``--deadline`` (seconds) stops unfinished recipes then; their finished folds are
still reported. Writes ``OUT/grid.json``, ``OUT/grid.md`` (one row per recipe and held-out source) and
``OUT/grid.png`` (held-out ROC AUC per recipe and source). Exits 2 (saying so) without the data.

The recipes are generic variations of the presets (which pseudo-fakes, how long, which input), never
settings chosen on the shared sets' results.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from generalisation import SHARED, SOURCES  # the benchmark each recipe runs (this folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

# name -> (preset, overrides, what it tests). Ordered by priority: with a deadline, the first ones run first.
RECIPES: dict[str, tuple[str, list[str], str]] = {
    "general": ("general-sbi-lite0", [], "the general preset as it stands (SBI pseudo-fakes, 3 epochs)"),
    "lite0-native-jpeg": ("lite0-native-jpeg", [], "the default preset (one source's recipe)"),
    "seed-mobilenet": ("seed-mobilenet", [], "the report's MobileNetV2 recipe"),
    "seed-cnn": ("seed-cnn", [], "the report's two-conv CNN recipe"),
    "general-sbi-resynth": (
        "general-sbi-lite0",
        ["data.pseudo_fakes=[sbi,resynth]"],
        "SBI and re-synthesis (the preset until 2026-11-30, and the shipped model v1)",
    ),
    "general-resynth": ("general-sbi-lite0", ["data.pseudo_fakes=[resynth]"], "re-synthesis instead of SBI"),
    "general-reals-only": (
        "general-sbi-lite0",
        ["data.use_fakes=false", "data.pseudo_fake_ratio=1.0"],
        "reals and pseudo-fakes only, as SBI trains (no real fakes)",
    ),
    "general-10ep": ("general-sbi-lite0", ["epochs=10", "optim.step_size=5"], "trained 10 epochs instead of 3"),
    "general-npr": ("general-sbi-lite0", ["model.input_filter=npr"], "NPR residual input"),
    "general-none": ("general-sbi-lite0", ["data.pseudo_fakes=[]"], "no pseudo-fakes"),
    "general-crops": (
        "general-sbi-lite0",
        ["preprocess.crop_size=192", "preprocess.tta=five-crop-flip"],
        "random 192 px crops in training, scored on five crops and their mirror images",
    ),
    "general-whole": (
        "general-sbi-lite0",
        ["model.trainable_blocks=null", "epochs=10", "optim.step_size=5"],
        "whole backbone trained, 10 epochs",
    ),
}


def launch(
    name: str, data: list[str], out: Path, workers: int | None, extra: list[str], held_out: list[str]
) -> subprocess.Popen:
    preset, overrides, _ = RECIPES[name]
    command = [sys.executable, str(ROOT / "benchmarks" / "generalisation.py"), "--preset", preset, "--skip-all",
               "--large-images", "0", "--out", str(out / name)]  # fmt: skip
    for path in data:
        command += ["--data", path]
    for source in held_out:
        command += ["--held-out", source]
    settings = overrides + extra + ([f"data.num_workers={workers}"] if workers is not None else [])
    for text in settings:
        command += ["--set", text]
    (out / name).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # The child keeps its own copy of the log's descriptor; this one is closed when the block ends.
    with open(out / name / "log.txt", "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        # Its own process group, so that stopping it at the deadline stops its data-loading workers too.
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )


def collect(out: Path, names: list[str], status: dict[str, str]) -> dict[str, object]:
    rows = {}
    for name in names:
        path = out / name / "loo" / "leave-one-out.json"
        result = json.loads(path.read_text()) if path.is_file() else {}
        preset, overrides, what = RECIPES[name]
        rows[name] = {
            "preset": preset,
            "overrides": overrides,
            "what": what,
            "status": status.get(name, "not run"),
            "folds": result.get("folds", {}),
            "mean_held_out_roc_auc": result.get("mean_held_out_roc_auc"),
        }
    return rows


def _auc(value: object) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_report(
    out: Path, rows: dict[str, dict], sources: list[str], header: dict[str, object], plot: bool = True
) -> None:
    (out / "grid.json").write_text(json.dumps(header | {"recipes": rows}, indent=2) + "\n")
    columns = " | ".join(f"held out: {s}" for s in sources)
    lines = [f"# Leave-one-source-out, {len(rows)} recipes", "", "```", json.dumps(header, indent=1), "```", "",
             f"| recipe | {columns} | mean | in-domain (ROC AUC, JPEG 50) | status |",
             "|---|" + "---:|" * (len(sources) + 1) + "---|---|"]  # fmt: skip
    for name, row in rows.items():
        folds = row["folds"]
        held = [_auc(folds[s]["held_out"]["roc_auc"]) if s in folds else "-" for s in sources]
        domain = []
        for held_name in sources:
            for source, values in folds.get(held_name, {}).get("in_domain", {}).items():
                domain.append(f"{source} without {held_name}: {_auc(values.get('roc_auc'))} "
                              f"({_auc(values.get('roc_auc_jpeg50'))})")  # fmt: skip
        mean = row["mean_held_out_roc_auc"] if len(folds) == len(sources) else None
        lines.append(f"| {name} | " + " | ".join(held) + f" | {_auc(mean)} | {'; '.join(domain)} | {row['status']} |")
    lines += ["", "Recipes:", ""] + [f"- `{n}`: {r['what']} (`{' '.join([r['preset'], *r['overrides']])}`)"
                                     for n, r in rows.items()]  # fmt: skip
    (out / "grid.md").write_text("\n".join(lines) + "\n")
    if not plot:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        return
    values = np.array([[rows[n]["folds"].get(s, {}).get("held_out", {}).get("roc_auc") or np.nan for s in sources]
                       for n in rows], dtype=float)  # fmt: skip
    figure, axis = plt.subplots(figsize=(2 + 1.6 * len(sources), 0.9 + 0.42 * len(rows)))
    image = axis.imshow(values, cmap="RdYlGn", vmin=0.3, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(sources)), [f"held out:\n{s}" for s in sources])
    axis.set_yticks(range(len(rows)), list(rows))
    for (i, j), value in np.ndenumerate(values):
        axis.text(j, i, "-" if np.isnan(value) else f"{value:.3f}", ha="center", va="center", fontsize=9)
    figure.colorbar(image, ax=axis, label="held-out ROC AUC")
    axis.set_title("Leave-one-source-out: ROC AUC on the source never trained on")
    figure.tight_layout()
    figure.savefig(out / "grid.png", dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", help=f"sources (default: {', '.join(SOURCES)} under {SHARED})")
    parser.add_argument("--recipes", help=f"comma-separated, in order (default: all: {', '.join(RECIPES)})")
    parser.add_argument("--out", type=Path, default=Path("runs/loo-grid"))
    parser.add_argument("--parallel", type=int, default=1, help="recipes run at the same time")
    parser.add_argument("--workers", type=int, help="data.num_workers of each run (default: the preset's)")
    parser.add_argument(
        "--held-out", action="append", default=[], metavar="NAME", help="only the folds leaving out NAME"
    )
    parser.add_argument("--deadline", type=float, help="seconds; unfinished recipes are stopped then")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="applied to every recipe (e.g. epochs=1 for a smoke run)")  # fmt: skip
    args = parser.parse_args()
    names = args.recipes.split(",") if args.recipes else list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    data = args.data or [str(SHARED / name) for name in SOURCES]
    missing = [d for d in data if not Path(d).is_dir()]
    if missing:
        print(f"leave-one-out grid: data not found: {', '.join(missing)} (the shared data sets are absent)")
        return 2
    sources = [Path(d).name for d in data]
    args.out.mkdir(parents=True, exist_ok=True)
    import torch

    header = {"started": time.strftime("%FT%TZ", time.gmtime()), "cores": os.cpu_count(), "torch": torch.__version__,
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "parallel": args.parallel, "workers": args.workers, "overrides": args.overrides}  # fmt: skip
    started = time.monotonic()
    queue, running, status = list(names), {}, {}
    while queue or running:
        while queue and len(running) < args.parallel:
            name = queue.pop(0)
            running[name] = (
                launch(name, data, args.out, args.workers, args.overrides, args.held_out),
                time.monotonic(),
            )
            print(f"[{time.monotonic() - started:6.0f} s] started {name}", flush=True)
        time.sleep(2)
        for name, (process, since) in list(running.items()):
            if process.poll() is not None:
                status[name] = "finished" if process.returncode == 0 else f"failed (exit {process.returncode})"
                elapsed, took = time.monotonic() - started, time.monotonic() - since
                print(f"[{elapsed:6.0f} s] {name}: {status[name]} after {took:.0f} s", flush=True)
                del running[name]
                write_report(args.out, collect(args.out, names, status), sources, header, plot=False)
        if args.deadline and time.monotonic() - started > args.deadline:
            for name, (process, _) in running.items():
                os.killpg(process.pid, signal.SIGKILL)
                status[name] = "stopped at the deadline (finished folds kept)"
            for name in queue:
                status[name] = "not started (deadline)"
            break
    header["wall_seconds"] = round(time.monotonic() - started)
    write_report(args.out, collect(args.out, names, status), sources, header)
    print((args.out / "grid.md").read_text())
    return 0 if all(s == "finished" for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
