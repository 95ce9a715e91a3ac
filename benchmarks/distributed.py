"""Scale-out on one machine: training in 1 and 2 processes, batch scoring plain and on Ray with 1 and 2 actors.

    python benchmarks/distributed.py --out runs/bench-distributed             # ../shared/data/ffhq-stylegan
    python benchmarks/distributed.py --quick --out /tmp/bench-distributed-q   # smoke check, built-in synthetic set

Training: ``facecheck train --nproc-per-node N`` for N = 1 and 2 (same global batch, the machine's cores
shared out, so the same total threads), each in its own command; images/s is the mean of the per-epoch
``train_images_per_s`` after the first epoch (the first builds the decode cache), and the wall time of the
whole command is reported beside it. Process start-up is measured apart: torchrun starting N Python
processes that import torch and join a gloo process group, then exit.

Batch scoring: the first run's ``best.pt`` scores every image of the data: plain ``Detector.predict``
with ONNX Runtime (all cores), then ``predict --engine ray`` (``facecheck.inference.ray_scoring``) on a
local Ray with 1 and 2 actors (the cores shared out). Ray's start-up (``ray.init``) is timed apart; the
Ray numbers include starting the actors (each loads the model), as a real job does.

Writes ``distributed.json`` and ``distributed.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "ffhq-stylegan"


def probe() -> None:
    """Run under torchrun by the start-up measurement: import torch, join the group, leave."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    dist.barrier()
    dist.destroy_process_group()


def run_command(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def process_startup(nproc: int, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               str(Path(__file__).resolve()), "--probe"]  # fmt: skip
    return run_command(command, env | {"OMP_NUM_THREADS": "1"})


def train_runs(args: argparse.Namespace, data: str, out: Path, env: dict[str, str]) -> dict[str, dict]:
    results = {}
    for nproc in (1, 2):
        run = out / f"train-{nproc}proc"
        command = [sys.executable, "-m", "facecheck", "train", "--data", data, "--preset", args.preset,
                   "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--out", str(run),
                   "--set", "data.inspect=false", "--quiet", "--nproc-per-node", str(nproc)]  # fmt: skip
        command += args.train_set
        if args.max_per_class:
            command += ["--max-per-class", str(args.max_per_class)]
        wall = run_command(command, env)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        steady = rows[1:] or rows
        results[f"{nproc}"] = {
            "processes": nproc,
            "images_per_s": sum(r["train_images_per_s"] for r in steady) / len(steady),
            "epoch_images_per_s": [r["train_images_per_s"] for r in rows],
            "epoch_seconds": [r["epoch_seconds"] for r in rows],
            "wall_seconds": wall,
            "train_loss": [r["train_loss"] for r in rows],
            "log_compute": next(
                (line for line in (run / "train.log").read_text().splitlines() if line.startswith("compute:")), ""
            ),
        }
    return results


def scoring_runs(model: Path, data: str, out: Path, cores: int, batch_size: int) -> dict[str, dict]:
    import ray

    from facecheck.api import expand_inputs
    from facecheck.inference.predictor import Detector
    from facecheck.inference.ray_scoring import score_with_ray, start_ray

    paths = expand_inputs([data])
    results: dict[str, dict] = {}
    detector = Detector.load(model, device="cpu", backend="onnx")  # exports once (cached)
    detector.predict(paths[:batch_size], batch_size)  # warm-up
    started = time.perf_counter()
    detector.predict(paths, batch_size)
    seconds = time.perf_counter() - started
    results["plain"] = {"images": len(paths), "seconds": seconds, "images_per_s": len(paths) / seconds}

    started = time.perf_counter()
    start_ray(num_cpus=cores)
    results["ray_start_seconds"] = time.perf_counter() - started
    try:
        for actors in (1, 2):
            target = out / f"scores-{actors}actor.parquet"
            started = time.perf_counter()
            summary = score_with_ray(model, paths, target, actors=actors, batch_size=batch_size,
                                     partition_size=max(1, len(paths) // (4 * actors)))  # fmt: skip
            seconds = time.perf_counter() - started
            results[f"ray_{actors}"] = {"actors": actors, "images": summary["images"], "seconds": seconds,
                                        "images_per_s": summary["images"] / seconds,
                                        "partitions": summary["partitions"]}  # fmt: skip
    finally:
        ray.shutdown()
    return results


def markdown(report: dict) -> str:
    machine, train, score = report["machine"], report["training"], report["scoring"]
    lines = [
        "# Scale-out on one machine",
        "",
        f"{machine['cpu']}, {machine['cores_available']} cores, {machine['memory_gib']} GiB; torch {machine['torch']}; "
        f"{report['date']}. Data: `{report['data']}`; preset `{report['preset']}`, {report['epochs']} epoch(s), "
        f"global batch {report['batch_size']}.",
        "",
        "## Training (same global batch, same total threads)",
        "",
        "| processes | images/s (epochs after the first) | per epoch | wall time of the command (s) |",
        "|---:|---:|---|---:|",
    ]
    for row in train.values():
        epochs = ", ".join(f"{v:.1f}" for v in row["epoch_images_per_s"])
        lines.append(f"| {row['processes']} | {row['images_per_s']:.1f} | {epochs} | {row['wall_seconds']:.1f} |")
    lines += [
        "",
        "Process start-up (torchrun, N interpreters importing torch and joining a gloo group): "
        + ", ".join(f"{n} process(es) {s:.1f} s" for n, s in report["process_startup_seconds"].items()),
        "",
        "## Batch scoring (ONNX Runtime)",
        "",
        "| engine | images | seconds | images/s |",
        "|---|---:|---:|---:|",
        f"| plain `predict` (in-process, all cores) | {score['plain']['images']} | {score['plain']['seconds']:.2f} | "
        f"{score['plain']['images_per_s']:.1f} |",
    ]
    for actors in (1, 2):
        row = score[f"ray_{actors}"]
        lines.append(
            f"| Ray, {actors} actor(s), {row['partitions']} partitions (actor start included) | {row['images']} | "
            f"{row['seconds']:.2f} | {row['images_per_s']:.1f} |"
        )
    lines += ["", f"Ray start-up (`ray.init`, local): {score['ray_start_seconds']:.1f} s", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for distributed.{json,md} and the runs (required)")
    parser.add_argument("--data", help=f"labelled folder (default {SHARED}; --quick: the built-in synthetic set)")
    parser.add_argument("--preset", default="seed-mobilenet")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-per-class", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke check on a tiny synthetic set")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe()
        return
    if not args.out:
        parser.error("--out is required")
    sys.path.insert(0, str(ROOT))
    from facecheck.compute import describe_machine
    from facecheck.data.synthetic import make_synthetic_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.train_set = []
    if args.quick:
        args.preset, args.epochs, args.batch_size, args.max_per_class = "seed-cnn", 2, 8, None
        args.train_set = ["--set", "preprocess.image_size=64"]
        data = args.data or str(make_synthetic_dataset(out / "synthetic", per_class=16))
    else:
        data = args.data or str(SHARED)
    if not Path(data).is_dir():
        raise SystemExit(f"data not found: {data} (give --data DIR)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("FACECHECK_CACHE_DIR", str(Path(tempfile.gettempdir()) / "facecheck-bench-distributed-cache"))
    os.environ["FACECHECK_CACHE_DIR"] = env["FACECHECK_CACHE_DIR"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    report = {"machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "data": data,
              "preset": args.preset, "epochs": args.epochs, "batch_size": args.batch_size}  # fmt: skip
    report["process_startup_seconds"] = {str(n): process_startup(n, env) for n in (1, 2)}
    report["training"] = train_runs(args, data, out, env)
    report["scoring"] = scoring_runs(out / "train-1proc" / "best.pt", data, out, cores, args.batch_size)
    (out / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "distributed.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
