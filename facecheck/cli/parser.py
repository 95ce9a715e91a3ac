"""The command line's declarations: every command, its options, their defaults and help, and the exit codes.

Declarations only: no command's logic lives here (see :mod:`facecheck.cli.commands`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from facecheck.choices import (
    AUGMENTATIONS,
    BACKENDS,
    BALANCE_MODES,
    INFERENCE_PRECISIONS,
    KEEP_CHECKPOINTS,
    NO_FACE_POLICIES,
    OUTPUT_FORMATS,
    PRECISIONS,
    PSEUDO_FAKE_KINDS,
    TTA_MODES,
)
from facecheck.config import (
    RECOMMENDED_PRESET,
    list_presets,
)
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
    add_precision_option(serve)
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
    explain.add_argument(
        "--threshold", type=unit_interval, metavar="P", help="verdicts at this p_fake (default: the model's own)"
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
    add_precision_option(parser)


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="auto",
        help="the network's precision: bf16 (OpenVINO, a CPU with native bf16: AVX512-BF16 or AMX), bf16-checked "
        "(bf16, and float32 again for each face whose answer lies near a decision), or fp32 (default: auto, the "
        "fastest of them that the model's card measured to keep its verdicts, where this CPU runs bf16; else fp32)",
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
