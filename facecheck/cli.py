"""Command-line interface: parse arguments, call the library, print results.

Exit codes: 0 success; 1 unexpected failure; 2 bad input or configuration, a bad
argument, a missing optional package or a port that cannot be listened on (each one
line on stderr, ``facecheck: error: ...``); 130 interrupted; 141 output pipe closed
early (``facecheck evaluate --json | head``), as for Unix tools.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from facecheck.choices import (
    AUGMENTATIONS,
    BACKENDS,
    BALANCE_MODES,
    KEEP_CHECKPOINTS,
    NO_FACE_POLICIES,
    OUTPUT_FORMATS,
    PRECISIONS,
    PSEUDO_FAKE_KINDS,
    TTA_MODES,
)
from facecheck.config import (
    GENERAL_PRESET,
    RECOMMENDED_PRESET,
    TrainConfig,
    get_preset,
    list_presets,
    load_config_file,
    merge,
    parse_override,
)
from facecheck.errors import FacecheckError
from facecheck.extras import extra_for, missing_extra_message, require_extra
from facecheck.paths import CACHE_KINDS
from facecheck.version import __version__

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (exit 2), not the usage block and then the message."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("facecheck").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"facecheck: error: {where}{message} (see: {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        # argparse reports options no (sub)command knows from the top parser; name the command they were given to.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = [getattr(parsed, key, None) for key in ("command", "data_command", "cache_command")]
            prog = " ".join(["facecheck", *[w for w in words if w]])
            command = prog.removeprefix("facecheck").strip()
            self.exit(
                EXIT_USAGE,
                f"facecheck: error: {command}: unrecognized arguments: {' '.join(extras)} (see: {prog} --help)\n",
            )
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="facecheck", description="Tell real face photographs from fake ones.")
    parser.add_argument("--version", action="version", version=f"facecheck {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model", description="Train a preset on a labelled data set.")
    train.add_argument(
        "--data",
        action="append",
        help="folder with one subfolder per class (real/, fake/), or a manifest; repeat to train on several "
        "sources at once (each kept apart in the split and in `evaluate --by source`); default: built-in synthetic set",
    )
    train.add_argument("--split-file", help="use this split (from `facecheck data split` or a run's split.csv)")
    train.add_argument("--out", help="run folder (default: runs/PRESET-TIMESTAMP)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last completed epoch")
    train.add_argument(
        "--keep",
        choices=KEEP_CHECKPOINTS,
        default="both",
        help="checkpoints a finished run keeps: both (best.pt and last.pt), or best (last.pt, the optimiser state "
        "for resuming, is removed once the run has finished: it can then no longer be resumed or extended; "
        "give the option again with --resume)",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the settings this run would use (YAML) and exit"
    )
    train.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="train in N processes on this machine (DDP; gloo on CPUs, NCCL on GPUs); the batch size stays the "
        "global batch and the threads are shared out. On a cluster use torchrun ... -m facecheck train instead",
    )
    train.add_argument(
        "--sync-batchnorm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with several processes, BatchNorm statistics of the global batch (default off: per process)",
    )
    add_recipe_options(train)

    crosseval = commands.add_parser("crosseval", help="train on each set, test on every set: ROC AUC matrix")
    crosseval.add_argument("--data", action="append", required=True, help="a labelled set (give two or more)")
    crosseval.add_argument("--out", required=True, help="folder for the runs and crosseval.{json,md,png}")
    crosseval.add_argument(
        "--leave-one-out",
        action="store_true",
        help="train on all sources but one and test on the one left out, for each in turn (needs 3+ --data); "
        "writes leave-one-out.{json,md,png}",
    )
    crosseval.add_argument(
        "--leave-one-generator-out",
        metavar="SOURCE",
        help="for each generator named in SOURCE's manifest (one of the --data sets): train on every --data set "
        "without that generator's images, test them against SOURCE's held-out reals; writes "
        "leave-one-generator-out.{json,md}",
    )
    crosseval.add_argument(
        "--held-out",
        action="append",
        metavar="NAME",
        help="with --leave-one-out: run only the fold that leaves out this source (its folder name); with "
        "--leave-one-generator-out: this generator; repeatable",
    )
    crosseval.add_argument(
        "--rescore",
        action="store_true",
        help="with --leave-one-out: score finished folds again instead of reusing their stored scores",
    )
    add_recipe_options(crosseval)

    cv = commands.add_parser("cv", help="K-fold cross-validation (stratified, group-aware)")
    cv.add_argument("--data", required=True)
    cv.add_argument("--folds", type=int, default=5)
    cv.add_argument("--out", required=True, help="folder for the folds, runs and cv.{json,md}")
    add_recipe_options(cv)

    tune = commands.add_parser("tune", help="Optuna search over lr, weight decay, dropout, batch size, augmentation")
    tune.add_argument("--data", required=True)
    tune.add_argument("--trials", type=int, default=10)
    tune.add_argument("--storage", default="sqlite:///facecheck-study.db", help="Optuna storage URL (resumable)")
    tune.add_argument("--study", help="study name (default: facecheck-PRESET)")
    tune.add_argument("--out", required=True, help="folder for trial runs, best_config.yaml and plots")
    add_recipe_options(tune)

    evaluate = commands.add_parser("evaluate", help="score a model on labelled data")
    evaluate.add_argument(
        "--model",
        action="append",
        help="run folder or checkpoint (repeat: ensemble of their mean); default: the shipped model",
    )
    evaluate.add_argument(
        "--data", action="append", help="labelled data set (repeatable: one row per set; default: the run's test split)"
    )
    evaluate.add_argument("--by", metavar="COLUMN", help="break metrics down by a metadata column (e.g. difficulty)")
    evaluate.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report (and its PNGs)")
    evaluate.add_argument(
        "--split",
        choices=("auto", "all"),
        default="auto",
        help="auto: only the test split when --data is the model's training folder; all: every image",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--perturb",
        nargs="+",
        metavar="KIND:V1,V2",
        help="also evaluate perturbed copies: jpeg:90,50 blur:1 resize:0.5",
    )
    add_engine_options(evaluate, batch_size=64)

    predict = commands.add_parser("predict", help="score image files")
    predict.add_argument(
        "--model",
        action="append",
        help="run folder or checkpoint (repeat: ensemble of their mean); default: the shipped model",
    )
    predict.add_argument(
        "--face-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="look for a face first (MTCNN) and answer 'no face' without one (default: as the model's card says)",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--format", choices=OUTPUT_FORMATS, default="table")
    predict.add_argument(
        "--out",
        metavar="FILE",
        help="write the results to FILE instead of stdout: CSV (.csv) or JSON (.json), written atomically; "
        "with --engine ray a folder of Parquet partitions (path, p_fake, label, error), and rerunning the same "
        "command skips finished partitions",
    )
    predict.add_argument("--frames", type=int, default=16, help="frames sampled evenly from each video (default 16)")
    add_engine_options(predict, batch_size=32)
    predict.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="ray: score on a Ray cluster (or a local Ray) in a pool of ONNX Runtime actors into --out "
        "(needs facecheck[distributed])",
    )
    predict.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local Ray)")
    predict.add_argument("--ray-actors", type=int, default=2, metavar="K", help="scoring actors (default 2)")
    predict.add_argument(
        "--ray-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: this machine's cores)"
    )
    predict.add_argument(
        "--partition-size", type=int, default=256, metavar="N", help="--engine ray: files per partition (default 256)"
    )

    serve = commands.add_parser("serve", help="REST service and web page (FastAPI + uvicorn)")
    serve.add_argument("--model", help="run folder, checkpoint or exported .onnx file (default: the shipped model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8000, help="TCP port, 1-65535")
    serve.add_argument("--backend", choices=BACKENDS, default="torch")
    serve.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the model's own)")
    serve.add_argument("--api-key", help="require this key (X-API-Key header); default: $FACECHECK_API_KEY if set")
    serve.add_argument("--workers", type=int, default=2, help="inferences at once (bounded worker pool)")
    serve.add_argument("--queue", type=int, default=16, help="requests allowed to wait for a worker before 503")
    serve.add_argument("--max-upload-mb", type=float, default=10.0)
    serve.add_argument("--timeout", type=float, default=30.0, help="seconds before a request gets 504")

    export = commands.add_parser("export", help="export to ONNX (optionally int8) with a parity check")
    export.add_argument("--model", help="run folder or checkpoint file (default: the shipped model)")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", required=True, metavar="FILE.onnx")
    export.add_argument("--quantize", choices=("int8",), help="static int8 quantisation (ONNX Runtime)")
    export.add_argument("--calibration", metavar="DIR", help="images to calibrate int8 activations on")
    export.add_argument(
        "--check-data", metavar="DIR", help="labelled images for the checks (default: the run's test split)"
    )
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed p_fake difference (float32)")

    explain = commands.add_parser("explain", help="Grad-CAM heatmaps: where the model looked")
    explain.add_argument("--model", help="run folder or checkpoint file (default: the shipped model)")
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    explain.add_argument(
        "--out", required=True, help="folder for the <name>.gradcam.png overlays (in the inputs' sub-folders)"
    )
    explain.add_argument("--json", action="store_true")

    data = commands.add_parser("data", help="data tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    inspect = data_commands.add_parser(
        "inspect", help="per-class facts, duplicates and shortcut warnings (JPEG quality, size, ...)"
    )
    inspect.add_argument("data", metavar="DIR")
    inspect.add_argument("--json", action="store_true", help="print the full report as JSON")
    inspect.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    split = data_commands.add_parser("split", help="write a group-aware split file, or K cross-validation folds")
    split.add_argument("data", metavar="DIR")
    split.add_argument("--out", required=True, help="folder for split.csv or fold_K.csv files")
    split.add_argument("--folds", type=int, default=0, help="K stratified, group-aware folds (0: one split)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--test-fraction", type=float, default=0.3)
    split.add_argument("--val-fraction", type=float, default=0.1)
    crop = data_commands.add_parser("crop", help="write face crops (MTCNN) of a folder, keeping its layout")
    crop.add_argument("data", metavar="DIR")
    crop.add_argument("--out", required=True, metavar="DIR2")
    crop.add_argument("--margin", type=float, default=0.2, help="margin around the face box, fraction (0.2)")
    crop.add_argument("--size", type=int, help="resize crops to SIZE x SIZE (default: keep)")
    crop.add_argument("--faces", choices=("largest", "all"), default="largest")
    crop.add_argument("--no-face", choices=NO_FACE_POLICIES, default="skip")
    shard = data_commands.add_parser(
        "shard", help="split a set as train would and write it as WebDataset tar shards (needs facecheck[distributed])"
    )
    shard.add_argument("data", metavar="DIR", nargs="+", help="labelled set(s), as train --data takes them")
    shard.add_argument("--out", required=True, metavar="SHARDS", help="folder for {train,val,test}-NNNNNN.tar")
    shard.add_argument("--shard-size", type=int, default=1000, metavar="N", help="images per shard (default 1000)")
    shard.add_argument("--seed", type=int, default=0, help="split seed, and the order of the training samples")
    shard.add_argument("--test-fraction", type=float, default=0.3)
    shard.add_argument("--val-fraction", type=float, default=0.1)
    shard.add_argument("--split-file", help="use this split (from `facecheck data split` or a run's split.csv)")
    shard.add_argument("--no-inspect", action="store_true", help="skip the duplicate search (groups) before splitting")
    download = data_commands.add_parser("download", help="fetch a public set from Kaggle (needs internet)")
    download.add_argument(
        "name", help="140k-real-and-fake-faces, real-and-fake-face-detection, deepfake-and-real-images"
    )
    download.add_argument("--out", default="data", help="parent folder")
    synthetic = data_commands.add_parser("synthetic", help="write the built-in synthetic set and print its folder")
    synthetic.add_argument("--out", help="folder to write (default: in the facecheck cache)")
    synthetic.add_argument("--per-class", type=int, default=60)
    synthetic.add_argument("--seed", type=int, default=0)

    models = commands.add_parser("models", help="list the shipped model, registered models and presets")
    models.add_argument("--json", action="store_true")
    models.add_argument(
        "--card", nargs="?", const=True, metavar="NAME", help="print a shipped model's card (default: the default one)"
    )

    cache = commands.add_parser(
        "cache", help="show or clean facecheck's cache folder (decoded images, features, ONNX exports, faces)"
    )
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="CACHE_COMMAND")
    cache_info = cache_commands.add_parser("info", help="where the cache is and what each part holds")
    cache_info.add_argument("--json", action="store_true")
    cache_clean = cache_commands.add_parser("clean", help="remove cached files (all are made again when needed)")
    cache_clean.add_argument(
        "--only", nargs="+", choices=list(CACHE_KINDS), metavar="KIND",
        help=f"remove only these parts: {', '.join(CACHE_KINDS)} (default: all of them)",
    )  # fmt: skip

    presets = commands.add_parser("presets", help="list training presets, or print one's full settings as YAML")
    presets.add_argument("--show", metavar="NAME", choices=list_presets(), help="print this preset's settings")
    show_defaults(parser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Make every (sub)command's --help show each option's default, unless its help already says it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                show_defaults(subparser)
            continue
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            continue
        text = action.help or ""
        if "default" not in text:
            action.help = f"{text} (default: %(default)s)".lstrip()


def unit_interval(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port a server can listen on."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


def add_engine_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """How a trained model is run (evaluate, predict)."""
    parser.add_argument(
        "--threshold",
        type=unit_interval,
        metavar="P",
        help="call an image fake when p_fake >= P, in [0, 1] (default: the model's own, chosen on validation; "
        "a different one drops the model's 'uncertain' band)",
    )
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="onnx: ONNX Runtime; openvino: OpenVINO (CPU); auto: the fastest installed (OpenVINO, ONNX Runtime, "
        "torch), torch on a GPU or for predict on fewer than 16 images (an engine's set-up would cost more)",
    )
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation averaged per image (default: the model's own; five-crop needs a crop model)",
    )


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and change the training recipe (shared by train, crosseval, cv and tune)."""
    parser.epilog = "Options left out keep the preset's value: `facecheck presets --show NAME` prints them all."
    parser.add_argument(
        "--preset",
        default=RECOMMENDED_PRESET,
        choices=list_presets(),
        help=f"named recipe (default: {RECOMMENDED_PRESET}, the recommended detector; seed-cnn and seed-mobilenet "
        "reproduce the report)",
    )
    parser.add_argument("--config", help="YAML file of settings applied on top of the preset")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, help="seed for the split, shuffling and augmentation")
    parser.add_argument("--val-fraction", type=float, help="validation part carved from training (0 = report's 70/30)")
    parser.add_argument("--max-per-class", type=int, help="use at most N images per class")
    parser.add_argument("--weights", help="pretrained backbone weights file (checked by hash)")
    parser.add_argument(
        "--normalize-jpeg", type=int, metavar="Q", help="re-encode every input at JPEG quality Q (kept for inference)"
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        help="report: flips+rotations; jpeg: plus random JPEG; robust: plus random blur and JPEG",
    )
    parser.add_argument(
        "--face-crop", action="store_true", default=None, help="crop the largest face (MTCNN); kept for inference"
    )
    parser.add_argument("--face-margin", type=float, help="margin around the face box, as a fraction (default 0.2)")
    parser.add_argument("--no-face", choices=NO_FACE_POLICIES, help="images without a face (default keep)")
    parser.add_argument(
        "--pseudo-fakes",
        nargs="+",
        choices=PSEUDO_FAKE_KINDS,
        help="add fakes made from the training reals: sbi (self-blended faces), resynth (re-synthesised images)",
    )
    parser.add_argument("--pseudo-fake-ratio", type=float, help="pseudo-fakes per real training image and epoch")
    parser.add_argument(
        "--reals-only",
        action="store_true",
        default=None,
        help="learn the fake class from pseudo-fakes alone (the data's own fakes stay out of training)",
    )
    parser.add_argument("--balance", choices=BALANCE_MODES, help="source-class: every (source, class) weighs the same")
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--precision", choices=PRECISIONS, help="arithmetic (default auto: bf16/AMP where native)")
    parser.add_argument(
        "--freeze-backbone", action="store_true", default=None, help="train only the head, on cached backbone features"
    )
    parser.add_argument(
        "--unfreeze", type=int, metavar="N", help="after --freeze-backbone, fine-tune the last N blocks"
    )
    parser.add_argument("--target-fpr", type=float, help="choose the threshold for this false-positive rate")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    resume = getattr(args, "resume", False)
    # Experiments (crosseval, cv, tune) take their data per run, not from here.
    data = getattr(args, "data", None) if getattr(args, "command", "train") == "train" else None
    data_dirs = [str(Path(d).expanduser().resolve()) for d in data] if data else None
    split_file = getattr(args, "split_file", None)
    if resume:
        from facecheck.run_folder import RunFolder

        if not args.out:
            raise FacecheckError("--resume needs --out RUN_DIR, the run to continue")
        config = RunFolder(args.out).resume_config(None)
    else:
        config = get_preset(args.preset)
    if args.config:
        config = merge(config, load_config_file(args.config))
    for text in args.overrides:
        config = merge(config, parse_override(text))
    flags: dict[str, Any] = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "device": args.device,
        "freeze_backbone": args.freeze_backbone,
        "unfreeze_blocks": args.unfreeze,
        "target_fpr": args.target_fpr,
    }
    nested: dict[str, dict[str, Any]] = {
        "data": {
            "data_dir": (data_dirs[0] if len(data_dirs) == 1 else data_dirs) if data_dirs else None,
            "split_seed": args.seed,
            "val_fraction": args.val_fraction,
            "max_per_class": args.max_per_class,
            "split_file": str(Path(split_file).expanduser().resolve()) if split_file else None,
            "pseudo_fakes": args.pseudo_fakes,
            "pseudo_fake_ratio": args.pseudo_fake_ratio,
            "use_fakes": False if args.reals_only else None,
            "balance": args.balance,
        },
        "optim": {"lr": args.lr},
        "model": {"weights": args.weights},
        "preprocess": {
            "normalize_jpeg": args.normalize_jpeg,
            "augment": args.augment,
            "face_crop": args.face_crop,
            "face_margin": args.face_margin,
            "no_face": args.no_face,
        },
        "compute": {"precision": args.precision, "sync_batchnorm": getattr(args, "sync_batchnorm", None)},
    }
    updates: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    for section, values in nested.items():
        chosen = {k: v for k, v in values.items() if v is not None}
        if chosen:
            updates[section] = chosen
    if resume and ("data" in updates or "preprocess" in updates):
        raise FacecheckError("a resumed run keeps its data, split and preprocessing; drop those options")
    return merge(config, updates) if updates else config


def command_train(args: argparse.Namespace) -> int:
    from facecheck.api import train
    from facecheck.run_folder import RunExistsError
    from facecheck.training.launch import LAUNCHER_PID, die_with_parent, inside_launched_process, launch_local

    if inside_launched_process() and os.environ.get(LAUNCHER_PID, "").isdigit():
        die_with_parent(int(os.environ[LAUNCHER_PID]))  # a killed `train --nproc-per-node` leaves no orphans
    config = train_config_from_args(args)
    if args.print_config:
        print(config_yaml(config), end="")
        return EXIT_OK
    if args.nproc_per_node < 1:
        raise FacecheckError("--nproc-per-node must be at least 1")
    if args.nproc_per_node > 1 and not inside_launched_process():
        if config.batch_size % args.nproc_per_node:
            raise FacecheckError(
                f"batch size {config.batch_size} is the global batch and must divide among "
                f"{args.nproc_per_node} processes"
            )
        argv = list(args.argv)
        if not args.out:  # every process must write (rank 0) and read the same run folder
            argv += ["--out", str(Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}")]
        return launch_local(argv, args.nproc_per_node)
    run_dir = Path(args.out) if args.out else Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = train(config, run_dir, resume=args.resume, quiet=args.quiet, keep=args.keep)
    except RunExistsError as exc:  # the same refusal in the command line's words
        raise FacecheckError(
            f"{exc.path} already holds a run; continue it with --resume or choose another --out"
        ) from None
    if int(os.environ.get("RANK", "0") or 0) == 0:  # one answer on stdout, from rank 0
        print(
            json.dumps({"run_dir": str(result.run_dir), "best_epoch": result.best_epoch, "test": result.test_metrics})
        )
    return EXIT_OK


def command_evaluate(args: argparse.Namespace) -> int:
    from facecheck.api import evaluate_with_scores, load_detector
    from facecheck.evaluation.perturb import parse_perturbations

    perturbations = parse_perturbations(args.perturb or [])  # parsed first: a typo fails before any work
    if args.report:
        require_extra("report")
    detector = load_detector(args.model or [None], device=args.device, backend=args.backend, tta=args.tta)
    sets = args.data or [None]
    results = []
    for index, data in enumerate(sets):
        result, scores = evaluate_with_scores(
            detector, data, split=args.split, batch_size=args.batch_size, perturbations=perturbations, by=args.by,
            progress=None, threshold=args.threshold,
        )  # fmt: skip
        for warning in result["warnings"]:
            print(f"facecheck: WARNING: {warning}", file=sys.stderr)
        results.append(result)
        if args.report:
            _write_report(args, detector, result, scores, index if len(sets) > 1 else None, data)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {"sets": results}))
        return EXIT_OK
    if len(results) > 1:
        print(f"model: {results[0]['model']}")
        print(f"  {'data':<44} {'n':>6} {'accuracy':>9} {'roc_auc':>8} {'ap':>7} {'eer':>7} {'ece':>7}")
        for result in results:
            shown = {
                k: "n/a" if result.get(k) is None else f"{result[k]:.4f}"
                for k in ("roc_auc", "average_precision", "eer", "ece")
            }
            print(
                f"  {_short(result['data'], 44):<44} {result['n']:>6} {result['accuracy']:>9.4f} {shown['roc_auc']:>8} "
                f"{shown['average_precision']:>7} {shown['eer']:>7} {shown['ece']:>7}"
            )
        return EXIT_OK
    _print_evaluation(results[0])
    return EXIT_OK


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _write_report(args: argparse.Namespace, detector: object, result: dict, scores: object, index: int | None,
                  data: str | None) -> None:  # fmt: skip
    from facecheck.checkpoint import resolve_checkpoint_path
    from facecheck.reporting.evaluation_report import write_evaluation_report

    target = Path(args.report)
    if index is not None:
        target = target.with_name(f"{target.stem}-{index}-{Path(data).name}{target.suffix}")
    write_evaluation_report(
        result, scores, target, detector=detector,
        run_dir=resolve_checkpoint_path(args.model[0]).parent if args.model else None,
    )  # fmt: skip
    print(f"report written to {target}", file=sys.stderr)


def _print_evaluation(result: dict) -> None:
    print(f"model: {result['model']}\ndata:  {result['data']}")
    print(f"images: {result['n']} (real {result['n_real']}, fake {result['n_fake']})  threshold {result['threshold']}")
    intervals = {"accuracy": result.get("accuracy_ci95"), "roc_auc": result.get("roc_auc_ci95")}
    for key in (
        "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
        "eer", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
    ):  # fmt: skip
        value = result.get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        if intervals.get(key):
            shown += f"  (95% CI {intervals[key][0]:.4f}-{intervals[key][1]:.4f})"
        print(f"  {key:<18} {shown}")
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    print("  confusion matrix   predicted real  predicted fake")
    print(f"    true real        {tn:>14}  {fp:>14}\n    true fake        {fn:>14}  {tp:>14}")
    for column, values in (result.get("breakdown") or {}).items():
        print(f"  by {column:<15} {'n':>6} {'accuracy':>9} {'roc_auc':>8}")
        for value, metrics in values.items():
            auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
            print(f"    {value:<16} {metrics['n']:>6} {metrics['accuracy']:>9.4f} {auc:>8}")
    if result.get("perturbations"):
        print("  perturbation       accuracy  roc_auc")
        for name, metrics in result["perturbations"].items():
            auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
            print(f"    {name:<16} {metrics['accuracy']:.4f}    {auc}")
    if result["n_unreadable"]:
        print(f"  {result['n_unreadable']} unreadable image(s) left out, e.g. {result['errors'][0]['error']}")


# notice: what limits the verdict (no face, no face check here, a picture far from the model's size).
# faces: how many faces were judged; face_box: the deciding face's box (left top right bottom, pixels).
# provenance: the summary of what the file declares about itself (--format json has the evidence).
PREDICTION_COLUMNS = ["path", "p_fake", "label", "notice", "faces", "face_box", "error", "provenance"]
RESULT_FILE_TYPES = (".csv", ".json")


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A result in one line: the face list becomes its count and the deciding face's box, the provenance its
    summary."""
    faces, decided = row.get("faces"), row.get("decided_by")
    flat = {**row, "faces": None if faces is None else len(faces)}
    flat["provenance"] = (row.get("provenance") or {}).get("summary")
    if faces and decided is not None:
        flat["face_box"] = " ".join(str(v) for v in faces[decided]["box"])
    return flat


def _prediction_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PREDICTION_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_flat_row(row) for row in rows)
    return buffer.getvalue()


def command_predict(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _predict_on_ray(args)
    if args.ray_address:
        raise FacecheckError("--ray-address is for --engine ray")
    from facecheck.api import expand_inputs, load_detector
    from facecheck.inference.predictor import show_progress
    from facecheck.inference.video import is_video_path, predict_video

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in RESULT_FILE_TYPES:
        raise FacecheckError(f"--out {out}: the file name must end in .csv or .json (the format follows it)")
    from facecheck.device import resolve_device
    from facecheck.inference.engines import resolve_backend

    inputs = expand_inputs(args.paths)  # a missing path or an empty folder stops here (exit 2), before loading
    if out is not None:
        from facecheck.files import check_output_file

        check_output_file(out, inputs)  # before any scoring: a bad --out costs nothing
    images = [p for p in inputs if not is_video_path(p)]
    frames = args.frames * (len(inputs) - len(images))  # each video is scored on that many frames
    backend = resolve_backend(args.backend, resolve_device(args.device), images=len(images) + frames)
    detector = load_detector(args.model or [None], device=args.device, backend=backend, tta=args.tta)
    members = getattr(detector, "members", [detector])
    if args.face_check is not None:
        for member in members:
            member.face_check = args.face_check
    problem = next((m.face_check_problem for m in members if m.face_check_problem), None)
    crops = any(getattr(m, "face_views", None) is not None for m in members)  # judges face crops: cannot run
    if problem and (args.face_check or crops):
        raise FacecheckError(f"{'--face-check' if args.face_check else 'this model judges face crops'}: {problem}")
    if problem:  # the card promises a face check this install cannot make: said once here, and beside each verdict
        print(f"facecheck: WARNING: pictures are not checked for a face: {problem}", file=sys.stderr)
    by_path: dict[Path, dict] = {}
    predictions = detector.predict(
        images, batch_size=args.batch_size, progress=show_progress(len(images)), threshold=args.threshold
    )
    for prediction in predictions:
        by_path.setdefault(Path(prediction.path), prediction.to_dict())
    for path in inputs:
        if is_video_path(path):
            by_path[path] = predict_video(detector, path, args.frames, threshold=args.threshold).to_dict()
    rows = [by_path[path] for path in inputs]
    if out is not None or args.format != "table":  # machine output on stdout or in a file: the scope on stderr
        print(f"facecheck: model: {_scope_line(detector, args.threshold)}", file=sys.stderr)
    if out is not None:
        from facecheck.files import atomic_write_text

        as_json = out.suffix.lower() == ".json"
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n" if as_json else _prediction_csv(rows))
        print(f"facecheck: {len(rows)} result(s) written to {out}", file=sys.stderr)
    elif args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "csv":
        sys.stdout.write(_prediction_csv(rows))
    else:
        print(f"model: {_scope_line(detector, args.threshold)}")
        width = max(len(str(row["path"])) for row in rows)
        for row in rows:
            if "error" in row:
                verdict = f"ERROR {row['error']}"
            else:
                frames = f"  (video: mean of {len(row['frames'])} frames)" if "frames" in row else ""
                notice = f"  ({row['notice']})" if row.get("notice") else ""
                verdict = f"{row['label']:<9} p_fake={row['p_fake']:.4f}{frames}{notice}{_faces_note(row)}"
            declared = f"  provenance: {row['provenance']['summary']}" if row.get("provenance") else ""
            print(f"{row['path']!s:<{width}}  {verdict}{declared}")
    failed = sum("error" in row for row in rows)
    if failed:
        print(f"facecheck: {failed} of {len(rows)} file(s) could not be read", file=sys.stderr)
    return EXIT_FAILURE if failed == len(rows) else EXIT_OK


def _faces_note(row: dict[str, Any]) -> str:
    """For a picture of several faces: which one decided, and each face's verdict."""
    faces = row.get("faces") or []
    if len(faces) < 2:
        return ""
    each = ", ".join(f"{face['label']} {face['p_fake']:.2f} at {tuple(face['box'])}" for face in faces)
    return f"  ({len(faces)} faces, the most suspicious decides: {each})"


def _predict_on_ray(args: argparse.Namespace) -> int:
    from facecheck.api import batch_score

    require_extra("distributed")
    if not args.out:
        raise FacecheckError("--engine ray writes its scores to a folder: give --out SCORES.parquet")
    if args.model and len(args.model) > 1:
        raise FacecheckError("--engine ray scores with one model (no ensembles)")
    if args.backend not in ("auto", "torch", "onnx") or args.device not in ("auto", "cpu"):
        raise FacecheckError("--engine ray runs the model in ONNX Runtime on CPUs (leave --backend and --device out)")
    summary = batch_score(
        args.model[0] if args.model else None, args.paths, args.out, address=args.ray_address,
        actors=args.ray_actors, num_cpus=args.ray_cpus, partition_size=args.partition_size,
        batch_size=args.batch_size, tta=args.tta, face_check=args.face_check,
    )  # fmt: skip
    print(json.dumps(summary))
    if summary["errors"]:
        print(f"facecheck: {summary['errors']} of {summary['images']} file(s) could not be read", file=sys.stderr)
    return EXIT_FAILURE if summary["errors"] == summary["images"] else EXIT_OK


def _scope_line(detector: Any, threshold: float | None = None) -> str:
    """What the model is and what it was trained on, shown beside its verdicts (``threshold``: the user's)."""
    card = detector.card
    band = f", uncertain {card.uncertain_band[0]:.2f}-{card.uncertain_band[1]:.2f}" if card.uncertain_band else ""
    what = card.scope.get("summary") or f"{card.model_name} ({card.preset})"
    if threshold is not None:
        return f"{what}; trained on {', '.join(card.trained_on)}; threshold {threshold:.3f} (set with --threshold)"
    return f"{what}; trained on {', '.join(card.trained_on)}; threshold {detector.threshold:.3f}{band}"


def command_crosseval(args: argparse.Namespace) -> int:
    from facecheck.experiments import crosseval

    require_extra("report")  # the heatmaps
    if args.leave_one_generator_out:
        from facecheck.experiments import leave_one_generator_out

        if args.leave_one_out or args.rescore:
            raise FacecheckError("--leave-one-generator-out goes alone (without --leave-one-out or --rescore)")
        logo = leave_one_generator_out(
            train_config_from_args(args), args.data, args.leave_one_generator_out, Path(args.out),
            held_out=args.held_out, quiet=args.quiet, progress=True,
        )  # fmt: skip
        print((Path(args.out) / "leave-one-generator-out.md").read_text())
        return EXIT_OK if logo["folds"] else EXIT_FAILURE
    for flag, given in (("--held-out", args.held_out), ("--rescore", args.rescore)):
        if given and not args.leave_one_out:
            raise FacecheckError(f"{flag} needs --leave-one-out")
    if args.leave_one_out:
        from facecheck.experiments import leave_one_out

        loo = leave_one_out(
            train_config_from_args(args), args.data, Path(args.out), quiet=args.quiet, progress=True,
            held_out=args.held_out, rescore=args.rescore,
        )  # fmt: skip
        print((Path(args.out) / "leave-one-out.md").read_text())
        return EXIT_OK if loo["folds"] else EXIT_FAILURE
    summary = crosseval(train_config_from_args(args), args.data, Path(args.out), quiet=args.quiet)
    print((Path(args.out) / "crosseval.md").read_text())
    return EXIT_OK if summary["matrix"] else EXIT_FAILURE


def command_cv(args: argparse.Namespace) -> int:
    from facecheck.experiments import cross_validate

    cross_validate(train_config_from_args(args), args.data, args.folds, Path(args.out), quiet=args.quiet)
    print((Path(args.out) / "cv.md").read_text())
    return EXIT_OK


def command_tune(args: argparse.Namespace) -> int:
    from facecheck.experiments import tune

    require_extra("tune")
    config = train_config_from_args(args)
    config = merge(config, {"data": {"data_dir": str(Path(args.data).expanduser().resolve())}})
    tune(config, args.trials, args.storage, Path(args.out), study_name=args.study, quiet=args.quiet)
    print((Path(args.out) / "tune.md").read_text())
    return EXIT_OK


def command_serve(args: argparse.Namespace) -> int:
    import logging

    require_extra("serve")
    from facecheck.api import load
    from facecheck.serving.app import ServeSettings, create_app
    from facecheck.serving.server import base_url, listen, serve, warm_up

    def say(line: str) -> None:
        print(f"facecheck: {line}", file=sys.stderr, flush=True)

    # Take the port before the model loads: a port in use or a bad host is one line (exit 2) at once.
    sock = listen(args.host, args.port)

    say(f"loading the model ({args.model or 'the shipped model'}, backend {args.backend}) ...")
    started = time.perf_counter()
    detector = load(args.model, device="auto", backend=args.backend, tta=args.tta)
    say(f"loaded {detector.source} in {time.perf_counter() - started:.1f} s; warming up (one prediction) ...")
    if detector.face_check_problem:
        say(f"WARNING: pictures are not checked for a face (each answer says so): {detector.face_check_problem}")
    say(f"warmed up in {warm_up(detector):.1f} s; starting the server ...")
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        workers=max(1, args.workers),
        queue_limit=max(0, args.queue),
        timeout_s=args.timeout,
        api_key=args.api_key or os.environ.get("FACECHECK_API_KEY") or None,
    )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = base_url(args.host, args.port)
    app = create_app(detector, settings)
    from facecheck.serving.app import docs_available

    docs = f" (API docs at {url}docs)" if docs_available() else ""
    serve(app, args.host, args.port, settings, on_ready=lambda: say(f"ready: serving on {url}{docs}"), sock=sock)
    return EXIT_OK


def command_export(args: argparse.Namespace) -> int:
    from facecheck.api import export_model

    require_extra("export")
    report = export_model(
        args.model, args.out, quantize=args.quantize, calibration=args.calibration,
        check_data=args.check_data, tolerance=args.tolerance, log=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(json.dumps(report, indent=2))
    print(
        f"parity: max |p_fake(PyTorch) - p_fake(ONNX)| = {report['max_abs_p_fake_difference']:.2e} "
        f"on {report['check_images']} images (limit {report['tolerance']:g})",
        file=sys.stderr,
    )
    if args.quantize:
        auc_change = "n/a" if report["roc_auc_change"] is None else f"{report['roc_auc_change']:+.4f}"
        print(
            f"int8: accuracy {report['accuracy_change']:+.4f}, ROC AUC {auc_change}, "
            f"speed-up {report['int8_speedup']:.2f}x at batch 32",
            file=sys.stderr,
        )
    return EXIT_OK


def command_explain(args: argparse.Namespace) -> int:
    from facecheck.api import expand_inputs, load
    from facecheck.evaluation.explain import explain_files

    require_extra("explain")
    inputs = expand_inputs(args.images)  # a missing path stops here (exit 2), before the model loads
    detector = load(args.model, device="cpu")
    if detector.model is None:
        raise FacecheckError("Grad-CAM needs the PyTorch checkpoint (run folder or .pt), not an .onnx export")
    results = explain_files(detector, inputs, Path(args.out))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for entry in results:
            shown = entry.get("error") or f"{entry['label']:<5} p_fake={entry['p_fake']:.4f} -> {entry['heatmap']}"
            print(f"{entry['path']}  {shown}")
    return EXIT_FAILURE if all("error" in e for e in results) else EXIT_OK


def command_data(args: argparse.Namespace) -> int:
    from facecheck.data.synthetic import make_synthetic_dataset

    if args.data_command == "inspect":
        return _data_inspect(args)
    if args.data_command == "split":
        from facecheck.api import split_data

        written = split_data(
            args.data, args.out, folds=args.folds, seed=args.seed,
            test_fraction=args.test_fraction, val_fraction=args.val_fraction, progress=True,
        )  # fmt: skip
        for path in written:
            print(path)
        return EXIT_OK
    if args.data_command == "shard":
        from facecheck.api import shard_data

        require_extra("distributed")
        manifest = shard_data(
            args.data, args.out, shard_size=args.shard_size, seed=args.seed, test_fraction=args.test_fraction,
            val_fraction=args.val_fraction, split_file=args.split_file, inspect=not args.no_inspect,
            log=lambda message: print(message, file=sys.stderr), progress=True,
        )  # fmt: skip
        counts = {name: {"images": part["count"], "shards": len(part["shards"])}
                  for name, part in manifest["splits"].items()}  # fmt: skip
        print(json.dumps({"out": str(args.out), "splits": counts}))
        return EXIT_OK
    if args.data_command == "crop":
        from facecheck.data.faces import crop_folder

        summary = crop_folder(
            Path(args.data), Path(args.out), margin=args.margin, size=args.size,
            all_faces=args.faces == "all", no_face=args.no_face,
        )  # fmt: skip
        print(json.dumps(summary.__dict__))
        return EXIT_OK
    if args.data_command == "download":
        from facecheck.data.download import download

        print(download(args.name, Path(args.out)))
        return EXIT_OK
    if args.per_class < 2:
        raise FacecheckError("--per-class must be at least 2")
    print(make_synthetic_dataset(Path(args.out) if args.out else None, args.per_class, args.seed))
    return EXIT_OK


def _data_inspect(args: argparse.Namespace) -> int:
    from facecheck.api import inspect_data
    from facecheck.data.inspect import summary_lines

    if args.report:
        require_extra("report")
    report = inspect_data(args.data, progress=not args.json)
    if args.report:
        from facecheck.reporting.inspect_report import write_inspect_report

        write_inspect_report(report, Path(args.report))
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "groups"}))
    else:
        print(f"{report['root']}: {report['n']} images; {report['layout']}")
        print("\n".join(summary_lines(report)))
        if args.report:
            print(f"report written to {args.report}")
    return EXIT_OK


def command_models(args: argparse.Namespace) -> int:
    from facecheck.card import render_card
    from facecheck.config import PRESETS
    from facecheck.inference.release import DEFAULT_MODEL, read_release_card, releases
    from facecheck.models import list_models, model_entry

    shipped = releases()
    if args.card:
        name = args.card if isinstance(args.card, str) else DEFAULT_MODEL
        if name not in shipped:
            raise FacecheckError(f"no shipped model {name!r}; shipped: {', '.join(shipped) or 'none'}")
        card = read_release_card(shipped[name])
        text = render_card(card, name, shipped[name].weights_sha256)
        if card.scope.get("face_check") or card.preprocess.face_crop:  # the card's promise, as kept here
            from facecheck.data.faces import face_detector_problem

            problem = face_detector_problem()
            state = f"NOT AVAILABLE HERE ({problem}); verdicts say so" if problem else "on (MTCNN looks first)"
            first, _, rest = text.partition("\n")
            text = f"{first}\nFace check: {state}\n{rest}"
        print(json.dumps(card.to_dict(), indent=2) if args.json else text)
        return EXIT_OK
    entries = [
        {"name": n, "description": model_entry(n).description, "pretrained": model_entry(n).has_pretrained}
        for n in list_models()
    ]
    presets = {name: preset.model.name for name, preset in PRESETS.items()}
    ready = {name: str(entry.weights.name) for name, entry in shipped.items()}
    if args.json:
        print(json.dumps({"models": entries, "presets": presets, "shipped": ready}))
        return EXIT_OK
    print("shipped (used when no --model is given; `facecheck models --card` shows its card):")
    for name in ready:
        print(f"  {name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    if not ready:
        print("  none")
    print("models:")
    for entry in entries:
        print(f"  {entry['name']:<18} {entry['description']}")
    print("presets:")
    for name, model in presets.items():
        print(f"  {name:<18} model {model}")
    return EXIT_OK


def command_cache(args: argparse.Namespace) -> int:
    from facecheck.paths import cache_dir, cache_usage, clean_cache, human_size

    where = cache_dir()
    if args.cache_command == "clean":
        removed = clean_cache(args.only)
        freed = sum(entry.bytes for entry in removed if entry.owned)
        for entry in removed:
            if entry.owned:
                print(f"removed {entry.kind:<10} {entry.files:>7} files  {human_size(entry.bytes):>9}")
            else:
                print(f"kept    {entry.kind:<10} {entry.path} (not made by facecheck: remove it yourself if unwanted)")
        print(f"freed {human_size(freed)} in {where}")
        return EXIT_OK
    usage = cache_usage()
    if args.json:
        print(json.dumps({"cache_dir": str(where), "parts": [entry.to_dict() for entry in usage]}))
        return EXIT_OK
    source = "$FACECHECK_CACHE_DIR" if os.environ.get("FACECHECK_CACHE_DIR") else "default; set $FACECHECK_CACHE_DIR"
    print(f"cache folder: {where} ({source})")
    for entry in usage:
        what = entry.description if entry.owned else "not made by facecheck: left alone"
        print(f"  {entry.kind:<10} {entry.files:>7} files  {human_size(entry.bytes):>9}  {what}")
    print(f"  {'total':<10} {sum(e.files for e in usage):>7} files  {human_size(sum(e.bytes for e in usage)):>9}")
    print("`facecheck cache clean` removes them; each is made again when next needed")
    return EXIT_OK


def config_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def command_presets(args: argparse.Namespace) -> int:
    if args.show:
        print(f"# facecheck train --preset {args.show} uses these settings")
        print(config_yaml(get_preset(args.show)), end="")
        return EXIT_OK
    for name in list_presets():
        marker = {RECOMMENDED_PRESET: "  (recommended)", GENERAL_PRESET: "  (general: several sources)"}.get(name, "")
        print(f"{name}{marker}")
    return EXIT_OK


COMMANDS = {
    "train": command_train,
    "evaluate": command_evaluate,
    "predict": command_predict,
    "explain": command_explain,
    "export": command_export,
    "serve": command_serve,
    "crosseval": command_crosseval,
    "cv": command_cv,
    "tune": command_tune,
    "data": command_data,
    "models": command_models,
    "presets": command_presets,
    "cache": command_cache,
}

# Long CPU-bound work whose threads should not spin while other processes need the cores (see facecheck.cpu).
TRAINING_COMMANDS = ("train", "crosseval", "cv", "tune")


def interrupted_message(args: argparse.Namespace) -> str:
    """What an interruption (Ctrl-C, SIGTERM) left behind, and how to go on, for the command that was running."""
    if args.command == "train":
        hint = f"; continue with: facecheck train --out {args.out} --resume" if args.out else ""
        return f"interrupted (completed epochs are saved){hint}"
    if args.command == "export":
        # export_model writes under temporary names and renames only after its checks (see there).
        return f"export interrupted: no partial file was left, and {args.out} was not written or changed"
    if args.command == "predict" and args.out:
        return f"interrupted: {args.out} was not written"
    return "interrupted"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    # `kill` (SIGTERM) stops a run the same way as Ctrl-C: checkpoints so far stay usable.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    args = build_parser().parse_args(argv)
    # What was asked, as given: `train --nproc-per-node N` runs it again in each process.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    # File names need not be UTF-8 (Linux): print their bytes as they are, as ls does, instead of failing.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    if args.command in TRAINING_COMMANDS and "torch" not in sys.modules:
        from facecheck.cpu import choose_wait_policy

        reason = choose_wait_policy()
        if reason:
            print(f"facecheck: the CPU is shared: {reason}", file=sys.stderr)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not as a warning at exit
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as Unix tools do.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except FacecheckError as exc:
        print(f"facecheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"facecheck: {interrupted_message(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("FACECHECK_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # a write of ours not caught below
            where = f" for {exc.filename}" if exc.filename else ""
            print(
                f"facecheck: error: no space left on the device{where}: free some space and run again", file=sys.stderr
            )
            return EXIT_FAILURE
        # An optional package imported somewhere below: name the extra that installs it.
        extra = extra_for(exc) if isinstance(exc, ModuleNotFoundError) else None
        if extra is not None:
            print(f"facecheck: error: {missing_extra_message(str(exc.name).split('.')[0], extra)}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"facecheck: unexpected error: {type(exc).__name__}: {exc} (set FACECHECK_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (tests, embedding): nothing is flushed at exit


if __name__ == "__main__":
    sys.exit(main())
