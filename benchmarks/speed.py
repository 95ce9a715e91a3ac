"""Speed benchmark: facecheck's training and inference against the report's naive pipeline, in one run.

    python benchmarks/speed.py                       # full run on ../shared/data/ffhq-stylegan
    python benchmarks/speed.py --quick               # small sample, about a minute: a smoke check
    python benchmarks/speed.py --epochs 2 --max-per-class 400 --out benchmarks/results
    python benchmarks/speed.py --only infer --busy 1  # with one process spinning on the CPU meanwhile

Every variant runs in its own process (so its peak memory is its own), one
after another on the same machine, on the same split of the same images.
Results go to ``OUT/speed.json`` and ``OUT/speed.md`` with a description of
the machine and its CPU features (AVX-512, VNNI, bf16, AMX; PyTorch's kernel
level); the ratios (facecheck / naive) are printed at the end, for float32 and,
where the CPU has native bf16, for bf16.

Training variants (same split, same number of epochs, test accuracy after them), for the
report's two models (cnn, mobilenet) and the default preset's EfficientNet-Lite0 (lite0):
  *-naive      the report's pipeline: PIL decode and transforms every epoch, float32, contiguous tensors
  *-fp32       facecheck's trainer in float32: decode cache, tensor augmentations, the preset's compute settings;
               the whole network trained
  *-bf16       the same with bf16 autocast; only where the CPU has native bf16 (emulated bf16 is far slower)
  *-last8      float32, only the backbone's last 8 blocks (and the head) trained: no backward through the rest
  mobilenet-frozen  --freeze-backbone: features computed once (timed apart), then 15 head-only epochs
Inference variants (MobileNetV2 at 256x256, batch-32 throughput and batch-1 latency):
  eager-fp32 (baseline), channels-last, channels-last-bf16, torchscript-frozen, torch-compile,
  onnxruntime, openvino; each with the largest probability difference to eager-fp32 on real images.
File-to-verdict variants (the default preset's model, trained briefly once into OUT/file-model):
  file-torch, file-onnx, file-onnx-int8, file-openvino, file-openvino-int8: one image file in, calibrated
  p_fake out (decode, JPEG normalisation, the model's test-time views, engine), median over test images;
  int8 is ONNX Runtime static quantisation calibrated on training images, with its test accuracy.
  shipped-torch, shipped-openvino, shipped-openvino-int8: the same for the shipped model (what `facecheck
  predict` uses by default), on the same images, without its face check; shipped-torch also times that face
  check (MTCNN) on its own.
  *-1view (file-openvino-1view, file-openvino-int8-1view, shipped-openvino-int8-1view, ...): the same scored on
  the image alone, without its mirror image (`--tta none`), with the ROC AUC and largest p_fake change that costs.
Evaluation variants (the same model, `evaluate` on its test split, batch 64, after one warm-up pass):
  evaluate-torch, evaluate-openvino.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facecheck.compute import describe_machine

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ffhq-stylegan"
TRAIN_VARIANTS = [
    "cnn-naive",
    "cnn-fp32",
    "cnn-bf16",
    "mobilenet-naive",
    "mobilenet-fp32",
    "mobilenet-bf16",
    "mobilenet-frozen",
    "mobilenet-last8",
    "lite0-naive",
    "lite0-fp32",
    "lite0-bf16",
    "lite0-last8",
]
# "-last8": float32, only the last 8 backbone blocks (and the head) trained (model.trainable_blocks): no backward
# pass through the early blocks, where the feature maps are largest.
LAST_BLOCKS = 8
INFER_VARIANTS = [
    "eager-fp32",
    "channels-last",
    "channels-last-bf16",
    "torchscript-frozen",
    "torch-compile",
    "onnxruntime",
    "openvino",
]
# File to verdict with the default preset's model (trained once, briefly, by the benchmark): one image file in,
# calibrated p_fake out, with the model's own test-time augmentation, per engine.
FILE_VARIANTS = ["file-torch", "file-onnx", "file-onnx-int8", "file-openvino", "file-openvino-int8"]
# One view instead of the model's two (`--tta none`): half the network's work per file.
ONE_VIEW_VARIANTS = ["file-openvino-1view", "file-openvino-int8-1view", "shipped-openvino-1view",
                     "shipped-openvino-int8-1view"]  # fmt: skip
# The same for the model that `facecheck predict` uses when none is named (shipped inside the package: the general
# preset, 224 px with the `fit` rule); int8 is calibrated on the benchmark's training images.
SHIPPED_VARIANTS = ["shipped-torch", "shipped-openvino", "shipped-openvino-int8"]
# Scoring a labelled set (what `evaluate` and leave-one-out spend their time on) with the default preset's model:
# torch against OpenVINO.
EVAL_VARIANTS = ["evaluate-torch", "evaluate-openvino"]
PRESET_OF = {"cnn": "seed-cnn", "mobilenet": "seed-mobilenet", "lite0": "lite0-native-jpeg"}
BF16_ONLY_WHERE_NATIVE = "skipped: this CPU has no native bf16 (emulated bf16 is several times slower than float32)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- one variant (runs in a child process)


def base_config(preset: str, args: argparse.Namespace):
    from facecheck.config import get_preset, merge

    return merge(
        get_preset(preset),
        {
            "epochs": args.epochs,
            "seed": 0,
            # The naive pipeline has no validation split: both train on the same 70%.
            "data": {"data_dir": str(args.data), "val_fraction": 0.0, "max_per_class": args.max_per_class},
            "compute": {"num_threads": args.threads},
        },
    )


def run_facecheck_training(variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from facecheck.config import merge
    from facecheck.training.trainer import train

    model_kind, mode = variant.split("-", 1)
    config = base_config(PRESET_OF[model_kind], args)
    if mode == "frozen":
        config = merge(config, {"freeze_backbone": True, "epochs": 15})
    elif mode == f"last{LAST_BLOCKS}":
        config = merge(config, {"compute": {"precision": "fp32"}, "model": {"trainable_blocks": LAST_BLOCKS}})
    else:  # the precision is part of the variant's name: fp32 or bf16; the whole network trained
        config = merge(config, {"compute": {"precision": mode}, "model": {"trainable_blocks": None}})
    started = time.perf_counter()
    result = train(config, work / "run", quiet=True)
    wall = time.perf_counter() - started
    rows = result.history
    epoch_seconds = [row["epoch_seconds"] for row in rows]
    train_ips = [row["train_images_per_s"] for row in rows]
    with open(work / "run" / "split.csv", newline="") as handle:
        n_train = sum(row["split"] == "train" for row in csv.DictReader(handle))
    epoch_train_seconds = [n_train / ips for ips in train_ips]
    out = {
        "variant": variant,
        "epochs": len(rows),
        "train_images": n_train,
        "train_images_per_s": statistics.mean(train_ips),
        "epoch_train_seconds": statistics.mean(epoch_train_seconds),
        "all_epochs_seconds": sum(epoch_seconds),
        "wall_seconds": wall,
        "test_accuracy": result.test_metrics["accuracy"],
        "test_roc_auc": result.test_metrics["roc_auc"],
    }
    # Set-up: discovery, image checks, decode cache (and for frozen runs the feature extraction), final test.
    out["setup_seconds"] = wall - sum(epoch_seconds)
    if mode == "frozen":
        out["head_epochs_seconds"] = sum(epoch_seconds)
    return out


def run_naive_training(variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The report's loop: ImageFolder-style PIL loading and transforms every epoch, float32, contiguous."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from facecheck.checkpoint import build_model
    from facecheck.data.dataset import ImageDataset
    from facecheck.data.transforms import eval_transform, train_transform
    from facecheck.evaluation.metrics import classification_metrics
    from facecheck.evaluation.scoring import score_loader
    from facecheck.training.preparation import prepare_data

    config = base_config(PRESET_OF[variant.split("-")[0]], args)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    split = prepare_data(config, lambda message: None, progress=False).split  # the split facecheck would make
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.optim.step_size, config.optim.gamma)
    loader = DataLoader(
        ImageDataset(split["train"], train_transform(config.preprocess)), batch_size=config.batch_size, shuffle=True
    )
    loss_fn = nn.CrossEntropyLoss()
    epoch_seconds = []
    started_all = time.perf_counter()
    for _epoch in range(config.epochs):
        model.train()
        started = time.perf_counter()
        for images, targets in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), targets)
            loss.backward()
            optimizer.step()
        scheduler.step()
        epoch_seconds.append(time.perf_counter() - started)
    test_loader = DataLoader(ImageDataset(split["test"], eval_transform(config.preprocess)), batch_size=64)
    p_fake, labels, _ = score_loader(model, test_loader, torch.device("cpu"))
    metrics = classification_metrics(labels, p_fake)
    n_train = len(split["train"])
    return {
        "variant": variant,
        "epochs": config.epochs,
        "train_images": n_train,
        "train_images_per_s": n_train / statistics.mean(epoch_seconds),
        "epoch_train_seconds": statistics.mean(epoch_seconds),
        "all_epochs_seconds": sum(epoch_seconds),
        "wall_seconds": time.perf_counter() - started_all,
        "test_accuracy": metrics["accuracy"],
        "test_roc_auc": metrics["roc_auc"],
    }


def timed(run, batch, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - started)
    return times


def run_inference(variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from facecheck.checkpoint import build_model
    from facecheck.compute import configure_threads
    from facecheck.config import get_preset
    from facecheck.data.discovery import discover, limit_per_class
    from facecheck.data.images import load_image
    from facecheck.data.transforms import eval_transform

    threads = configure_threads(args.threads)
    config = get_preset("seed-mobilenet")
    torch.manual_seed(0)
    model = build_model(config).eval()
    transform = eval_transform(config.preprocess)
    records = limit_per_class(discover(args.data), 16)
    batch32 = torch.stack([transform(load_image(r.path)) for r in records[:32]])
    batch1 = batch32[:1]
    with torch.inference_mode():
        reference = torch.softmax(model(batch32), 1)[:, 1].numpy()

    setup_seconds = 0.0
    started = time.perf_counter()
    if variant in ("eager-fp32", "channels-last", "channels-last-bf16"):
        use_cl = variant != "eager-fp32"
        net = model.to(memory_format=torch.channels_last) if use_cl else model
        dtype = torch.bfloat16 if variant.endswith("bf16") else None

        def run(x):
            with (
                torch.inference_mode(),
                torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None),
            ):
                x = x.contiguous(memory_format=torch.channels_last) if use_cl else x
                return torch.softmax(net(x).float(), 1)[:, 1].numpy()

    elif variant == "torchscript-frozen":
        with torch.inference_mode():
            traced = torch.jit.trace(model, batch1)
        scripted = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))

        def run(x):
            with torch.inference_mode():
                return torch.softmax(scripted(x), 1)[:, 1].numpy()

    elif variant == "torch-compile":
        compiled = torch.compile(model, dynamic=True)

        def run(x):
            with torch.inference_mode():
                return torch.softmax(compiled(x), 1)[:, 1].numpy()

        run(batch1)
        run(batch32)
    elif variant in ("onnxruntime", "openvino"):
        from facecheck.inference.engines import OnnxEngine, OpenVinoEngine
        from facecheck.inference.export import export_onnx
        from facecheck.inference.outputs import p_fake_of

        # The engines facecheck ships (`--backend onnx` / `--backend openvino`), not hand-tuned copies.
        onnx_path = export_onnx(model, config.preprocess, work / "model.onnx")
        engine = (OnnxEngine if variant == "onnxruntime" else OpenVinoEngine)(onnx_path, threads)

        def run(x):
            return p_fake_of(engine(x))

    else:
        raise SystemExit(f"unknown variant {variant}")
    setup_seconds = time.perf_counter() - started

    difference = float(np.abs(np.asarray(run(batch32)) - reference).max())
    repeats32, repeats1 = (2, 10) if args.quick else (6, 40)
    throughput_times = timed(run, batch32, repeats32, warmup=1)
    latency_times = timed(run, batch1, repeats1, warmup=3)
    return {
        "variant": variant,
        "threads": threads,
        "batch32_images_per_s": 32 * repeats32 / sum(throughput_times),
        "batch1_latency_ms_median": 1000 * statistics.median(latency_times),
        "batch1_latency_ms_p90": 1000 * float(np.percentile(latency_times, 90)),
        "max_abs_p_fake_difference": difference,
        "setup_seconds": setup_seconds,
    }


def file_model_dir(args: argparse.Namespace) -> Path:
    return args.out / "file-model"


def train_file_model(args: argparse.Namespace) -> dict[str, Any]:
    """The default preset trained briefly, for the file-to-verdict variants (kept in OUT/file-model)."""
    from facecheck.config import get_preset, merge
    from facecheck.training.trainer import train

    per_class = 32 if args.quick else 150
    config = merge(
        get_preset(PRESET_OF["lite0"]),
        {
            "epochs": 1 if args.quick else 2,
            "seed": 0,
            "data": {"data_dir": str(args.data), "max_per_class": per_class},
            "compute": {"num_threads": args.threads},
        },
    )
    started = time.perf_counter()
    result = train(config, file_model_dir(args), quiet=True)
    return {
        "variant": "file-model",
        "train_seconds": time.perf_counter() - started,
        "test_accuracy": result.test_metrics["accuracy"],
        "test_roc_auc": result.test_metrics["roc_auc"],
    }


def run_file_latency(variant: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """File in, calibrated verdict out (decode, JPEG normalisation, views, engine), one image at a time."""
    import numpy as np

    from facecheck.api import export_model
    from facecheck.compute import configure_threads
    from facecheck.data.images import load_image
    from facecheck.data.splits import read_split
    from facecheck.evaluation.metrics import classification_metrics
    from facecheck.inference.predictor import Detector

    threads = configure_threads(args.threads)
    run_dir = file_model_dir(args)
    split = read_split(run_dir / "split.csv", args.data)
    test = split["test"][: 40 if args.quick else 200]
    paths, labels = [r.path for r in test], np.array([r.label for r in test])
    one_view = variant.endswith("-1view")
    tta = "none" if one_view else None  # None: the model's own views
    quantized = variant.removesuffix("-1view").endswith("-int8")
    model, engine = variant.removesuffix("-1view").removesuffix("-int8").split("-", 1)
    model_path = None if model == "shipped" else run_dir  # None: the shipped model
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if quantized:
        calibration = work / "calibration"
        calibration.mkdir()
        for index, record in enumerate(split["train"][:128]):
            (calibration / f"{index:04d}{record.path.suffix}").symlink_to(record.path.resolve())
        check = {} if model_path else {"check_data": args.data}  # the shipped model has no test split of its own
        report = export_model(model_path, work / "model.int8.onnx", quantize="int8", calibration=calibration, **check)
        extra = {k: report[k] for k in ("accuracy_change", "roc_auc_change", "int8_max_abs_p_fake_difference")}
        detector = Detector.load(work / "model.int8.onnx", backend=engine, tta=tta)
    else:
        detector = Detector.load(model_path, backend=engine, tta=tta)
    setup_seconds = time.perf_counter() - started
    reference = Detector.load(model_path, backend="torch") if engine != "torch" else detector
    # The file path itself: the shipped model's face check (MTCNN) is timed apart, on images new to it.
    detector.face_check = reference.face_check = False
    reference_scores = np.array([p.p_fake for p in reference.predict(paths)])
    for path in paths[:5]:  # warm-up
        detector.predict(path)
    times, cpu_times, scores = [], [], []
    for path in paths:
        begun, cpu_begun = time.perf_counter(), time.process_time()
        scores.append(detector.predict(path)[0].p_fake)
        times.append(time.perf_counter() - begun)
        cpu_times.append(time.process_time() - cpu_begun)
    if variant == "shipped-torch":  # the shipped model's card asks for a face check: MTCNN, on images new to it
        from facecheck.data.faces import detect_faces

        face_times = []
        for path in paths:
            image = load_image(path)
            begun = time.perf_counter()
            detect_faces(image, use_cache=False)
            face_times.append(time.perf_counter() - begun)
        extra["face_check_ms_median"] = 1000 * statistics.median(face_times)
    scores_array = np.array(scores)
    measured = classification_metrics(labels, scores_array, detector.threshold)
    accuracy = measured["accuracy"]
    extra["test_roc_auc"] = measured["roc_auc"]
    extra["reference_test_roc_auc"] = classification_metrics(labels, reference_scores)["roc_auc"]
    return {
        "variant": variant,
        "threads": threads,
        "tta": detector.tta,
        "images": len(paths),
        "file_latency_ms_median": 1000 * statistics.median(times),
        "file_latency_ms_p90": 1000 * float(np.percentile(times, 90)),
        # CPU time of all threads: the work a verdict costs, readable even on a crowded machine.
        "file_cpu_ms_median": 1000 * statistics.median(cpu_times),
        "test_accuracy": accuracy,
        "max_abs_p_fake_difference": float(np.abs(scores_array - reference_scores).max()),
        "setup_seconds": setup_seconds,
        **extra,
    }


def run_evaluation_speed(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """``evaluate`` on the file model's test split: images/s from files to metrics."""
    from facecheck.compute import configure_threads
    from facecheck.evaluation.evaluate import evaluate
    from facecheck.inference import predictor

    threads = configure_threads(args.threads)
    backend = variant.split("-")[1]
    detector = predictor.Detector.load(file_model_dir(args), backend=backend)
    evaluate(detector, batch_size=64)  # warm-up (and the same images in the page cache for every variant)
    started = time.perf_counter()
    result = evaluate(detector, batch_size=64)
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "threads": threads,
        "tta": detector.tta,
        "images": result["n"],
        "evaluate_images_per_s": result["n"] / seconds,
        "test_roc_auc": result["roc_auc"],
    }


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="facecheck-bench-") as tmp:
        work = Path(tmp)
        if variant == "file-model":
            result = train_file_model(args)
        elif variant in EVAL_VARIANTS:
            result = run_evaluation_speed(variant, args)
        elif variant in FILE_VARIANTS + SHIPPED_VARIANTS + ONE_VIEW_VARIANTS:
            result = run_file_latency(variant, args, work)
        elif variant in INFER_VARIANTS:
            result = run_inference(variant, args, work)
        elif variant.endswith("-naive"):
            result = run_naive_training(variant, args, work)
        else:
            result = run_facecheck_training(variant, args, work)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# ---------------------------------------------------------------- orchestration


def child_command(variant: str, args: argparse.Namespace, result_file: Path) -> list[str]:
    command = [sys.executable, __file__, "--variant", variant, "--result-file", str(result_file)]
    command += ["--data", str(args.data), "--epochs", str(args.epochs), "--threads", str(args.threads)]
    command += ["--out", str(args.out)]
    if args.max_per_class:
        command += ["--max-per-class", str(args.max_per_class)]
    if args.quick:
        command.append("--quick")
    return command


def markdown(report: dict[str, Any]) -> str:
    m, settings = report["machine"], report["settings"]
    lines = [
        "# facecheck speed benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores_available']} cores, {m['memory_gib']} GiB, native bf16: {m['native_bf16']}, "
        f"CUDA: {m['cuda']}; Python {m['python']}, torch {m['torch']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_average_at_start'])}; {m['date']}.",
        "CPU features: "
        + ", ".join(f"{k}={v}" for k, v in (m.get("cpu_features") or {}).items())
        + f"; busy processes alongside: {settings.get('busy', 0)}.",
        f"Data: `{settings['data']}`, {settings['max_per_class'] or 'all'} images per class, "
        f"{settings['epochs']} epochs, 70/30 split (seed 0), threads: {settings['threads'] or 'all'}.",
        "",
    ]
    train = [r for r in report["results"] if "train_images_per_s" in r]
    if train:
        lines += [
            "| training variant | images/s | s per epoch (training) | setup s | test accuracy | test ROC AUC "
            "| peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in train:
            auc = "n/a" if r.get("test_roc_auc") is None else f"{r['test_roc_auc']:.4f}"
            lines.append(
                f"| {r['variant']} ({r['epochs']} ep) | {r['train_images_per_s']:.1f} | "
                f"{r['epoch_train_seconds']:.1f} | {r.get('setup_seconds', 0):.1f} | "
                f"{r['test_accuracy']:.4f} | {auc} | {r['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    infer = [r for r in report["results"] if "batch32_images_per_s" in r]
    if infer:
        lines += [
            "| inference (MobileNetV2, 256x256) | batch 32 images/s | batch 1 median ms | batch 1 p90 ms | "
            "max abs p_fake diff vs eager | setup s | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in infer:
            lines.append(
                f"| {r['variant']} | {r['batch32_images_per_s']:.1f} | {r['batch1_latency_ms_median']:.2f} | "
                f"{r['batch1_latency_ms_p90']:.2f} | {r['max_abs_p_fake_difference']:.2e} | {r['setup_seconds']:.1f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
        lines.append("")
    files = [r for r in report["results"] if "file_latency_ms_median" in r]
    if files:
        lines += [
            "| file to verdict, batch 1 (file-*: default preset's model; shipped-*: shipped model) "
            "| median ms | p90 ms | median CPU ms | views "
            "| test accuracy | test ROC AUC (torch, model's views) | max abs p_fake diff vs torch | setup s |",
            "|---|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in files:
            auc = (
                "-" if r.get("test_roc_auc") is None else f"{r['test_roc_auc']:.4f} ({r['reference_test_roc_auc']:.4f})"
            )
            lines.append(
                f"| {r['variant']} | {r['file_latency_ms_median']:.2f} | {r['file_latency_ms_p90']:.2f} | "
                f"{r.get('file_cpu_ms_median', float('nan')):.2f} | {r['tta']} | "
                f"{r['test_accuracy']:.4f} | {auc} | {r['max_abs_p_fake_difference']:.2e} | {r['setup_seconds']:.1f} |"
            )
        lines.append("")
    evaluations = [r for r in report["results"] if "evaluate_images_per_s" in r]
    if evaluations:
        lines += ["| evaluate (default preset's model, test split, batch 64) | images/s | views | ROC AUC |",
                  "|---|---:|---|---:|"]  # fmt: skip
        for r in evaluations:
            lines.append(
                f"| {r['variant']} | {r['evaluate_images_per_s']:.1f} | {r['tta']} | {r['test_roc_auc']:.4f} |"
            )
        lines.append("")
    for r in report["results"]:
        if "error" in r:
            lines.append(f"- {r['variant']} failed: {r['error']}")
        elif "skipped" in r:
            lines.append(f"- {r['variant']} {r['skipped']}")
    lines += ["## Ratios", ""] + [f"- {k}: {v}" for k, v in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def ratios(results: list[dict[str, Any]]) -> dict[str, str]:
    by = {r["variant"]: r for r in results if "error" not in r}
    out: dict[str, str] = {}
    for kind in PRESET_OF:
        naive = by.get(f"{kind}-naive")
        for precision in ("fp32", "bf16", f"last{LAST_BLOCKS}"):
            fast = by.get(f"{kind}-{precision}")
            if fast and naive and "train_images_per_s" in fast:
                out[f"{kind} training images/s, facecheck {precision} / naive"] = (
                    f"{fast['train_images_per_s'] / naive['train_images_per_s']:.2f}x "
                    f"(test accuracy {fast['test_accuracy']:.4f} vs {naive['test_accuracy']:.4f}, "
                    f"ROC AUC {fast['test_roc_auc']:.4f} vs {naive['test_roc_auc']:.4f})"
                )
    frozen = by.get("mobilenet-frozen")
    if frozen:
        out["mobilenet frozen backbone, 15 head epochs"] = (
            f"{frozen['head_epochs_seconds']:.1f} s after a {frozen['setup_seconds']:.1f} s feature/decode set-up "
            f"(test accuracy {frozen['test_accuracy']:.4f})"
        )
    eager = by.get("eager-fp32")
    torch_paths = [by[v] for v in ("channels-last", "channels-last-bf16", "torchscript-frozen") if v in by]
    runtimes = [by[v] for v in ("onnxruntime", "openvino") if v in by]
    if eager and torch_paths:
        best = max(torch_paths, key=lambda r: r["batch32_images_per_s"])
        out["best facecheck PyTorch path (batch 32)"] = (
            f"{best['variant']}: {best['batch32_images_per_s'] / eager['batch32_images_per_s']:.2f}x eager"
        )
        if runtimes:
            top = max(runtimes, key=lambda r: r["batch32_images_per_s"])
            out["best runtime (batch 32)"] = (
                f"{top['variant']}: {top['batch32_images_per_s'] / eager['batch32_images_per_s']:.2f}x eager; "
                f"best PyTorch path is {best['batch32_images_per_s'] / top['batch32_images_per_s']:.2f}x of it"
            )
        fastest1 = min([*torch_paths, *runtimes], key=lambda r: r["batch1_latency_ms_median"])
        out["lowest batch-1 latency"] = f"{fastest1['variant']}: {fastest1['batch1_latency_ms_median']:.2f} ms"
    for model, label in (("file", "default preset's model"), ("shipped", "shipped model")):
        files = [r for r in by.values() if r["variant"].startswith(f"{model}-") and "file_latency_ms_median" in r]
        if not files:
            continue
        fastest = min(files, key=lambda r: r["file_latency_ms_median"])
        base = by.get(f"{model}-torch")
        versus = f", {base['file_latency_ms_median'] / fastest['file_latency_ms_median']:.2f}x torch" if base else ""
        out[f"lowest file-to-verdict latency ({label})"] = (
            f"{fastest['variant']}: {fastest['file_latency_ms_median']:.2f} ms{versus} "
            f"(test accuracy {fastest['test_accuracy']:.4f})"
        )
    base = by.get("evaluate-torch")
    fast = by.get("evaluate-openvino")
    if base and fast:
        out["evaluate-openvino / evaluate-torch"] = (
            f"{fast['evaluate_images_per_s'] / base['evaluate_images_per_s']:.2f}x "
            f"({fast['evaluate_images_per_s']:.1f} vs {base['evaluate_images_per_s']:.1f} images/s)"
        )
    shipped = by.get("shipped-torch")
    if shipped and "face_check_ms_median" in shipped:
        out["shipped model's face check (MTCNN, new images)"] = f"{shipped['face_check_ms_median']:.1f} ms more"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="16 images per class, 1 epoch, fewer repeats")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-per-class", type=int)
    parser.add_argument("--threads", type=int, default=0, help="0: all available cores")
    parser.add_argument("--only", choices=("train", "infer"), help="run one half of the benchmark")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU meanwhile")
    parser.add_argument("--variants", help="comma-separated subset of variants")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.max_per_class = 1, args.max_per_class or 16

    if args.variant:
        result = run_variant(args.variant, args)
        args.result_file.write_text(json.dumps(result))
        return 0

    if not args.data.is_dir():
        print(f"speed benchmark: data folder {args.data} is absent; pass --data DIR (real/ and fake/ inside)")
        return 2
    variants = (TRAIN_VARIANTS if args.only != "infer" else []) + (
        INFER_VARIANTS + FILE_VARIANTS + SHIPPED_VARIANTS + ONE_VIEW_VARIANTS + EVAL_VARIANTS
        if args.only != "train"
        else []
    )
    if args.quick:
        variants = [v for v in variants if v != "torch-compile"]  # its compile alone takes minutes
    if args.variants:
        variants = [v for v in args.variants.split(",") if v]
    # The file-* variants time its model; the shipped-* ones take their test images from its split.
    needs_file_model = [
        i for i, v in enumerate(variants) if v in FILE_VARIANTS + SHIPPED_VARIANTS + ONE_VIEW_VARIANTS + EVAL_VARIANTS
    ]
    if needs_file_model and not (file_model_dir(args) / "best.pt").is_file():
        variants.insert(min(needs_file_model), "file-model")
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FACECHECK_CACHE_DIR", tempfile.mkdtemp(prefix="facecheck-bench-cache-"))
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "settings": {
            "data": str(args.data),
            "epochs": args.epochs,
            "max_per_class": args.max_per_class,
            "threads": args.threads,
            "quick": args.quick,
            "busy": args.busy,
        },
        "results": [],
    }
    native_bf16 = report["machine"]["native_bf16"]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    for variant in variants:
        print(f"-- {variant} ...", flush=True)
        if variant.endswith("-bf16") and not native_bf16:
            report["results"].append({"variant": variant, "skipped": BF16_ONLY_WHERE_NATIVE})
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as handle:
            done = subprocess.run(child_command(variant, args, Path(handle.name)), capture_output=True, text=True)
            if done.returncode == 0:
                result = json.loads(Path(handle.name).read_text())
            else:
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                result = {"variant": variant, "error": tail[:300]}
        report["results"].append(result)
        print(
            "   " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}), flush=True
        )
    for process in busy:
        process.kill()
        process.wait()
    report["ratios"] = ratios(report["results"])
    (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "speed.md").write_text(markdown(report))
    print()
    print(markdown(report))
    return 1 if any("error" in r for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
