"""Where a training step's time goes, and which compute settings make it faster, measured A against B.

    python benchmarks/train_step.py --profile                 # torch.profiler table of the default preset's step
    python benchmarks/train_step.py                           # in-process variants, interleaved rounds
    python benchmarks/train_step.py --variants eager-contiguous,eager,compile --rounds 5
    python benchmarks/train_step.py --env-variants --busy 1   # threads / OpenMP wait policies, one busy competitor

Every variant trains the same model (the preset's, float32 unless the variant
says bf16) on the same pre-augmented batches of real images, in rounds: each
round runs every variant for ``--steps`` steps, so that load from other
processes falls on all of them alike; medians over all timed steps are
reported with their ratio to the first variant, for wall time and for the
process's CPU time (the work done, less sensitive to a crowded machine as long
as waiting threads sleep rather than spin). ``--env-variants`` runs each
setting in its own process (thread counts and OpenMP wait policies are read
when the OpenMP runtime starts), again interleaved, optionally while
``--busy`` processes spin on the same cores (another job sharing the CPU).
Data preparation (augmentation of a batch) is timed apart: it runs on the
main thread before each step in facecheck's trainer.
Writes ``OUT/train_step.{json,md}`` (and ``OUT/profile-*.txt`` with --profile).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ffhq-stylegan"
# name -> (channels_last, compile, bf16, flush_denormal)
STEP_VARIANTS = {
    "eager-contiguous": (False, False, False, False),
    "eager": (True, False, False, False),
    "eager-flush-denormal": (True, False, False, True),
    "contiguous-flush-denormal": (False, False, False, True),
    "compile": (True, True, False, False),
    "compile-contiguous": (False, True, False, False),
    "bf16": (True, False, True, False),
    "bf16-contiguous": (False, False, True, False),
}
# Any variant + "-lastN": only the last N backbone blocks (and the head) trained, as model.trainable_blocks.
LAST_BLOCKS = re.compile(r"-last(\d+)$")
# Any variant + this suffix: EfficientNet-Lite's SAME padding as a padded copy before every convolution
# (facecheck before the speed work on float32), to measure that change in the same run.
PADDED_COPY = "-padded-copy"
# name -> (environment, threads); "threads" 0 means facecheck's default choice.
ENV_VARIANTS = {
    "default": ({}, 0),
    "2-threads-passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "2-threads-active": ({"OMP_WAIT_POLICY": "ACTIVE"}, 2),
    "1-thread": ({}, 1),
}


def batches(args: argparse.Namespace, config, count: int):
    """``count`` augmented training batches (and the mean seconds one took to augment) from real images."""
    import torch

    from facecheck.data.decode_cache import CachedImageDataset, decoded_images
    from facecheck.data.discovery import discover, limit_per_class
    from facecheck.data.transforms import train_tensor_transform

    if args.data.is_dir():
        records = limit_per_class(discover(args.data), config.batch_size)
    else:  # no shared data: the built-in synthetic set
        from facecheck.data.synthetic import make_synthetic_dataset

        records = limit_per_class(discover(make_synthetic_dataset()), config.batch_size)
    pixels = decoded_images(records, config.preprocess, progress=False)
    dataset = CachedImageDataset(pixels, [r.label for r in records], train_tensor_transform(config.preprocess))
    torch.manual_seed(0)
    out, seconds = [], []
    for index in range(count):
        started = time.perf_counter()
        order = torch.randperm(len(dataset))[: config.batch_size]
        items = [dataset[int(i)] for i in order]
        images, targets = torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
        seconds.append(time.perf_counter() - started)
        out.append((images, targets))
        del index
    return out, statistics.median(seconds)


def preset_config(args: argparse.Namespace):
    from facecheck.config import get_preset, merge

    return merge(get_preset(args.preset), {"batch_size": args.batch_size, "compute": {"precision": "fp32"}})


def step_settings(variant: str) -> tuple[bool, bool, bool, bool]:
    return STEP_VARIANTS[LAST_BLOCKS.sub("", variant).removesuffix(PADDED_COPY)]


def make_trainer(config, variant: str):
    import torch

    from facecheck.checkpoint import build_model
    from facecheck.training.runners import Phase, TrainStep, set_train_mode, set_trainable

    channels_last, compile_step, bf16, _ = step_settings(variant)
    last = LAST_BLOCKS.search(variant)
    variant = LAST_BLOCKS.sub("", variant)
    torch.manual_seed(0)
    model = build_model(config)
    if variant.endswith(PADDED_COPY):
        for module in model.modules():
            if hasattr(module, "weight") and type(module).__name__ == "SameConv2d":
                module.forward = types.MethodType(padded_copy_forward, module)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    phase = Phase("full", 1, 1, 1e-4, int(last.group(1)) if last else None)
    parameters = set_trainable(model, phase)
    set_train_mode(model, phase)
    optimizer = torch.optim.Adam(parameters, lr=1e-4, weight_decay=config.optim.weight_decay)
    return TrainStep(
        model, optimizer, torch.device("cpu"), torch.bfloat16 if bf16 else None, channels_last, compile_step
    )


def padded_copy_forward(self, x):
    import math

    from torch.nn import functional as F

    pads = []
    for size, kernel, stride in (
        (x.shape[-1], self.kernel_size[1], self.stride[1]),
        (x.shape[-2], self.kernel_size[0], self.stride[0]),
    ):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def run_steps(trainer, data, steps: int, start: int, cpu_times: list[float] | None = None) -> list[float]:
    """Wall seconds of each step; with ``cpu_times``, the process's CPU seconds of each step are appended to it."""
    times = []
    for index in range(steps):
        images, targets = data[(start + index) % len(data)]
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer(images, targets)
        times.append(time.perf_counter() - started)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu_started)
    return times


def in_process(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from facecheck.compute import configure_threads

    threads = configure_threads(args.threads)
    config = preset_config(args)
    data, augment_seconds = batches(args, config, 4)
    results: dict[str, dict[str, Any]] = {}
    trainers = {}
    for variant in args.variants:
        started = time.perf_counter()
        trainers[variant] = make_trainer(config, variant)
        torch.set_flush_denormal(step_settings(variant)[3])
        run_steps(trainers[variant], data, args.warmup, 0)  # warm-up (and, compiled, the compilation)
        results[variant] = {
            "variant": variant,
            "setup_seconds": time.perf_counter() - started,
            "step_seconds": [],
            "step_cpu_seconds": [],
        }
        print(f"{variant}: ready after {results[variant]['setup_seconds']:.1f} s", flush=True)
    for round_index in range(args.rounds):
        for variant in args.variants:
            torch.set_flush_denormal(step_settings(variant)[3])
            cpu = results[variant]["step_cpu_seconds"]
            times = run_steps(trainers[variant], data, args.steps, round_index, cpu)
            results[variant]["step_seconds"] += times
            print(
                f"round {round_index + 1} {variant}: wall {', '.join(f'{t:.2f}' for t in times)} s, "
                f"cpu {', '.join(f'{t:.2f}' for t in cpu[-len(times) :])} s",
                flush=True,
            )
    torch.set_flush_denormal(False)
    rows = list(results.values())
    base = statistics.median(rows[0]["step_seconds"])
    base_cpu = statistics.median(rows[0]["step_cpu_seconds"])
    for row in rows:
        row["median_step_seconds"] = statistics.median(row["step_seconds"])
        row["images_per_s"] = config.batch_size / row["median_step_seconds"]
        row["speed_vs_first"] = base / row["median_step_seconds"]
        row["median_step_cpu_seconds"] = statistics.median(row["step_cpu_seconds"])
        row["cpu_speed_vs_first"] = base_cpu / row["median_step_cpu_seconds"]
    return {"threads": threads, "augment_seconds_per_batch": augment_seconds, "rows": rows}


def profile(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, record_function

    from facecheck.compute import configure_threads

    configure_threads(args.threads)
    config = preset_config(args)
    out: dict[str, Any] = {}
    for variant in args.variants:
        data, augment_seconds = batches(args, config, 4)
        trainer = make_trainer(config, variant)
        torch.set_flush_denormal(step_settings(variant)[3])
        run_steps(trainer, data, 2, 0)
        with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as prof:
            for images, targets in data[:3]:
                with record_function("## step"):
                    trainer(images, targets)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
        path = args.out / f"profile-{variant}.txt"
        header = (
            f"# {args.preset}, {variant}, batch {config.batch_size}, 3 steps after 2 warm-up steps; "
            f"augmenting one batch (outside the step) took {augment_seconds:.3f} s\n\n"
        )
        path.write_text(header + table + "\n")
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.top]
        out[variant] = {
            "file": str(path),
            "augment_seconds_per_batch": augment_seconds,
            "top_self_cpu_share": [(e.key, round(e.self_cpu_time_total / total, 4)) for e in top],
        }
        print(header + table, flush=True)
    return out


def busy_loop() -> None:
    while True:
        pass


def env_child(args: argparse.Namespace) -> None:
    """One timed block of steps in this process; prints the step times as JSON."""
    from facecheck.compute import configure_threads

    configure_threads(args.threads)
    config = preset_config(args)
    data, _ = batches(args, config, 4)
    trainer = make_trainer(config, "eager")
    run_steps(trainer, data, 2, 0)
    print(json.dumps(run_steps(trainer, data, args.steps, 0)))


def env_variants(args: argparse.Namespace) -> dict[str, Any]:
    names = args.env_names
    busy = [subprocess.Popen([sys.executable, __file__, "--busy-child"]) for _ in range(args.busy)]
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for _ in range(args.rounds):
            for name in names:
                environment, threads = ENV_VARIANTS[name]
                command = [sys.executable, __file__, "--env-child", "--threads", str(threads)]
                command += ["--steps", str(args.steps), "--preset", args.preset, "--data", str(args.data)]
                command += ["--batch-size", str(args.batch_size)]
                done = subprocess.run(command, env=os.environ | environment, capture_output=True, text=True, check=True)
                times[name] += json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for process in busy:
            process.kill()
            process.wait()
    rows = []
    base = statistics.median(times[names[0]])
    for name in names:
        median = statistics.median(times[name])
        rows.append(
            {
                "variant": name,
                "environment": ENV_VARIANTS[name][0],
                "threads": ENV_VARIANTS[name][1] or "default",
                "step_seconds": times[name],
                "median_step_seconds": median,
                "images_per_s": args.batch_size / median,
                "speed_vs_first": base / median,
            }
        )
    return {"busy_processes": args.busy, "rows": rows}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# facecheck training-step benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores, CPU features {m.get('cpu_features')}, torch "
        f"{m['torch']}; load average at start {', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; "
        f"{m['date']}. Preset {report['settings']['preset']}, batch {report['settings']['batch_size']}, "
        f"{report['settings']['rounds']} rounds x {report['settings']['steps']} steps per variant, interleaved.",
        "",
    ]
    for key, title in (("step", "in one process"), ("env", "one process per setting")):
        part = report.get(key)
        if not part:
            continue
        extra = f", {part['busy_processes']} busy process(es) alongside" if key == "env" else ""
        lines += [
            f"## Train step, {title}{extra}",
            "",
            "| variant | median s per step | images/s | speed vs first | median CPU s per step "
            "| CPU-time speed vs first | set-up s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in part["rows"]:
            lines.append(
                f"| {row['variant']} | {row['median_step_seconds']:.3f} | {row['images_per_s']:.1f} | "
                f"{row['speed_vs_first']:.2f}x | {row.get('median_step_cpu_seconds', float('nan')):.2f} | "
                f"{row.get('cpu_speed_vs_first', float('nan')):.2f}x | {row.get('setup_seconds', float('nan')):.1f} |"
            )
        if "augment_seconds_per_batch" in part:
            lines.append(
                f"\nAugmenting one batch (before each step, main thread): {part['augment_seconds_per_batch']:.3f} s"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="lite0-native-jpeg")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--variants", default="eager-contiguous,eager,eager-flush-denormal,compile")
    parser.add_argument("--profile", action="store_true", help="profile the variants instead of timing them")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile table")
    parser.add_argument("--env-variants", nargs="?", const=",".join(ENV_VARIANTS), dest="env_names")
    parser.add_argument("--busy", type=int, default=0, help="busy processes alongside the --env-variants runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--env-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--busy-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.busy_child:
        busy_loop()
    if args.env_child:
        env_child(args)
        return 0
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if LAST_BLOCKS.sub("", v).removesuffix(PADDED_COPY) not in STEP_VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(STEP_VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    from facecheck.compute import describe_machine

    report: dict[str, Any] = {
        "machine": describe_machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if args.profile:
        report["profile"] = profile(args)
    elif args.env_names:
        args.env_names = [v for v in args.env_names.split(",") if v]
        report["env"] = env_variants(args)
    else:
        report["step"] = in_process(args)
    suffix = "profile" if args.profile else ("env" if args.env_names else "step")
    (args.out / f"train_step-{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.profile:
        text = markdown(report)
        (args.out / f"train_step-{suffix}.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
