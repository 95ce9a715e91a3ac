"""The training loop: data preparation, epochs with progress, metrics, checkpoints, resume.

Every epoch reseeds the random generators from ``(seed, epoch)``, so a run
resumed from the last completed epoch draws the same shuffles, augmentations
and dropout masks as an uninterrupted run and ends with the same weights.
"""

from __future__ import annotations

import csv
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from facecheck.checkpoint import BEST, LAST, build_model, read_checkpoint, save_checkpoint
from facecheck.compute import configure_threads, resolve_precision, to_memory_format
from facecheck.config import TrainConfig, save_config, validate
from facecheck.data.dataset import ImageDataset, scan_readable
from facecheck.data.discovery import ImageRecord, count_by_class, limit_per_class
from facecheck.data.inspect import inspect_records, merge_groups, summary_lines
from facecheck.data.layouts import Dataset, describe, open_dataset
from facecheck.data.presets import eval_transform
from facecheck.data.splits import make_split, read_split, write_split
from facecheck.data.synthetic import make_synthetic_dataset
from facecheck.device import resolve_device
from facecheck.errors import DataError, FacecheckError
from facecheck.evaluation.calibration import calibrate
from facecheck.evaluation.metrics import classification_metrics, full_metrics
from facecheck.evaluation.scoring import loader_logits, mean_cross_entropy, p_fake_of
from facecheck.training.datasets import RunDatasets
from facecheck.training.runners import ImageRunner, plan_phases, set_trainable

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.csv"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped.csv"
LOG_FILE = "train.log"
INSPECT_FILE = "inspect.json"

Log = Callable[[str], None]


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int
    test_metrics: dict[str, Any]
    history: list[dict[str, Any]]


class RunLog:
    """Prints to stderr (stdout stays clean for machine output) and keeps a copy in train.log.

    Lines logged before the run folder exists are kept and written once it is
    created, so a run that fails on its data leaves no folder behind.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.path: Path | None = None
        self.pending: list[str] = []

    def __call__(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)
        self.pending.append(message)
        if self.path is not None:
            self.flush()

    def attach(self, run_dir: Path) -> None:
        self.path = run_dir / LOG_FILE
        self.flush()

    def flush(self) -> None:
        assert self.path is not None
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in self.pending)
        self.pending.clear()


def resolve_data_dir(config: TrainConfig, log: Log) -> Path:
    if config.data.data_dir is None:
        path = make_synthetic_dataset()
        log(f"NOTE: no --data given: using the built-in SYNTHETIC face set at {path}")
        log("NOTE: synthetic cartoons test the tool, not detection of real fakes; use --data DIR for real images")
        return path
    return Path(config.data.data_dir).expanduser().resolve()


@dataclass
class PreparedData:
    root: Path
    split: dict[str, list[ImageRecord]]
    unreadable: list[tuple[str, str]]
    inspection: dict[str, Any] | None = None

    def write(self, run_dir: Path) -> None:
        write_split(self.split, run_dir / SPLIT_FILE, self.root)
        if self.inspection is not None:
            summary = {k: v for k, v in self.inspection.items() if k not in ("facts", "groups")}
            (run_dir / INSPECT_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if self.unreadable:
            with open(run_dir / SKIPPED_FILE, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["path", "reason"])
                writer.writerows(self.unreadable)


def prepare_data(config: TrainConfig, log: Log, progress: bool) -> PreparedData:
    """Discover, check and split the images (nothing is written yet)."""
    data_dir = resolve_data_dir(config, log)
    dataset = open_dataset(data_dir)
    records = dataset.records
    counts = count_by_class(records)
    log(f"found {len(records)} images in {data_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    log(describe(dataset))
    if config.data.max_per_class is not None:
        records = limit_per_class(records, config.data.max_per_class)
        log(f"using at most {config.data.max_per_class} per class: {count_by_class(records)}")
    records, bad = scan_readable(records, config.data.min_image_size, progress=progress)
    if bad:
        log(f"WARNING: skipped {len(bad)} unusable image(s) (all listed in the run's {SKIPPED_FILE}):")
        for path, reason in bad[:5]:
            log(f"  {path}: {reason}")
    pre = config.preprocess
    if pre.face_crop and pre.no_face in ("skip", "fail"):
        records = _drop_faceless(records, config, log, progress)
    inspection, groups = None, dataset.group_ids(records)
    if config.data.inspect:
        inspection = inspect_records(records, dataset.root, progress)
        groups = merge_groups(groups, inspection["groups"])
        for line in summary_lines(inspection):
            log(f"data: {line}")
    data = config.data
    if data.split_file:
        split = _split_from_file(config, data_dir, records)
        log(f"split taken from {data.split_file}")
    elif dataset.split is not None:
        split = _own_split(dataset, records, groups, data.val_fraction, data.split_seed)
        log(f"using the data set's own split ({dataset.layout})")
    else:
        split = make_split(records, data.test_fraction, data.val_fraction, data.split_seed, groups)
    log("split: " + ", ".join(f"{name} {len(part)} {count_by_class(part)}" for name, part in split.items() if part))
    return PreparedData(dataset.root, split, bad, inspection)


def _own_split(
    dataset: Dataset, records: list[ImageRecord], groups: list | None, val_fraction: float, seed: int
) -> dict[str, list[ImageRecord]]:
    """The set's predefined parts, limited to usable images; validation carved from train if it has none."""
    usable = set(records)
    split = {name: [r for r in part if r in usable] for name, part in dataset.split.items()}
    if not split["train"] or not split["test"]:
        raise DataError(f"the {dataset.layout} split has no usable train or test images")
    if not split["val"] and val_fraction > 0:
        group_of = dict(zip(records, groups, strict=True)) if groups else {}
        train = split["train"]
        carved = make_split(train, val_fraction, 0.0, seed, [group_of.get(r, i) for i, r in enumerate(train)])
        split["train"], split["val"] = carved["train"], carved["test"]
    return split


def _drop_faceless(records: list[ImageRecord], config: TrainConfig, log: Log, progress: bool) -> list[ImageRecord]:
    """Detect faces up front (filling the detection cache); leave out or fail on images without one."""
    from facecheck.data.faces import NoFaceError
    from facecheck.data.images import load_image
    from facecheck.data.presets import source_steps

    steps = source_steps(config.preprocess)
    kept, faceless = [], []
    for record in tqdm(records, desc="finding faces", unit="img", disable=not progress, leave=False):
        image = load_image(record.path, config.data.min_image_size)
        try:
            for step in steps:
                image = step(image)
        except NoFaceError:
            if config.preprocess.no_face == "fail":
                raise DataError(f"{record.path}: no face found (use --no-face keep or skip)") from None
            faceless.append(record)
        else:
            kept.append(record)
    if faceless:
        log(f"left out {len(faceless)} image(s) with no face found (--no-face skip), e.g. {faceless[0].path}")
    return kept


def _split_from_file(config: TrainConfig, data_dir: Path, records: list[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """A split file's parts, restricted to the images that are present and readable."""
    split = read_split(Path(config.data.split_file).expanduser(), data_dir)
    usable = {r.path.resolve() for r in records}
    kept = {name: [r for r in part if r.path.resolve() in usable] for name, part in split.items()}
    if not kept["train"] or not kept["test"]:
        raise DataError(f"split file {config.data.split_file} names no usable train or test images under {data_dir}")
    return kept


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed the global RNG (augmentations, dropout) and return the shuffling generator for ``epoch``."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    quiet: bool = False,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir``; with ``resume`` continue its last completed epoch.

    ``on_epoch`` is called with each epoch's metrics row after its checkpoints
    are written (hyperparameter search uses it to prune a trial early).
    """
    validate(config)
    run_dir = Path(run_dir)
    if resume:
        if not (run_dir / LAST).is_file():
            raise FacecheckError(f"nothing to resume: no {LAST} in {run_dir}")
    elif (run_dir / LAST).exists() or (run_dir / BEST).exists():
        raise FacecheckError(f"{run_dir} already holds a run; continue it with --resume or choose another --out")
    log = RunLog(quiet)
    device = resolve_device(config.device)
    progress = progress and not quiet

    if resume:
        log.attach(run_dir)
        data_root = resolve_data_dir(config, log)
        split = read_split(run_dir / SPLIT_FILE, data_root)
        log(f"resuming {run_dir} from {run_dir / LAST}")
    else:
        prepared = prepare_data(config, log, progress)
        run_dir.mkdir(parents=True, exist_ok=True)
        log.attach(run_dir)
        prepared.write(run_dir)
        split = prepared.split
    save_config(config, run_dir / CONFIG_FILE)

    threads = configure_threads(config.compute.num_threads) if device.type == "cpu" else 0
    amp_dtype = resolve_precision(config.compute.precision, device)
    log(
        f"compute: {device}{f', {threads} threads' if threads else ''}, "
        f"{'float32' if amp_dtype is None else str(amp_dtype).removeprefix('torch.') + ' autocast'}, "
        f"{'channels-last' if config.compute.channels_last else 'contiguous'} tensors"
    )

    # Seeded so the new layers start the same in every run of this seed.
    # Pretrained weights are only needed for a fresh start; a resumed model gets its trained weights below.
    torch.manual_seed(config.seed)
    model = build_model(config, pretrained=config.model.pretrained and not resume).to(device)
    model = to_memory_format(model, config.compute.channels_last)
    start_epoch, best_score, best_epoch, saved_state = 1, float("-inf"), 0, None
    if resume:
        state = read_checkpoint(run_dir / LAST)
        model.load_state_dict(state["state_dict"])
        saved_state = state["train_state"]
        start_epoch = int(state["epoch"]) + 1
        best_score, best_epoch = float(saved_state["best_score"]), int(saved_state["best_epoch"])
    history = _read_history(run_dir, keep_through=start_epoch - 1)

    monitor_name = "val" if split["val"] else "test"
    if monitor_name == "test":
        log(
            "NOTE: no validation split (data.val_fraction=0): per-epoch metrics are on the test split, "
            "and best.pt is simply the last epoch so that no choice is made on test data"
        )
    datasets = RunDatasets(config, split, monitor_name, progress)
    if start_epoch > config.total_epochs:
        log(f"all {config.total_epochs} epochs are already done")

    for phase in plan_phases(config):
        if phase.last_epoch < start_epoch:
            continue
        parameters = set_trainable(model, phase)
        optimizer = torch.optim.Adam(parameters, lr=phase.lr, weight_decay=config.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.optim.step_size, gamma=config.optim.gamma
        )
        if saved_state is not None and saved_state.get("phase", "full") == phase.name:
            optimizer.load_state_dict(saved_state["optimizer"])
            scheduler.load_state_dict(saved_state["scheduler"])
        if phase.name == "head":
            runner = datasets.feature_runner(model, device, amp_dtype)
            log(f"phase head: training the head on cached {config.model.name} features")
        else:
            runner = ImageRunner(datasets.train(), datasets.monitor(), config, device, amp_dtype, progress)
            if phase.name == "unfreeze":
                log(f"phase unfreeze: fine-tuning the last {phase.trainable_blocks} backbone blocks, lr {phase.lr}")

        for epoch in range(max(start_epoch, phase.first_epoch), phase.last_epoch + 1):
            epoch_started = time.perf_counter()
            generator = seed_epoch(config.seed, epoch)
            lr = optimizer.param_groups[0]["lr"]
            stats = runner.train_epoch(model, phase, optimizer, generator, f"epoch {epoch}/{config.total_epochs}")
            scheduler.step()
            p_fake, labels, monitor_loss = runner.score(model, f"{monitor_name} {epoch}")
            scores = classification_metrics(labels, p_fake)
            row = {
                "epoch": epoch,
                "phase": phase.name,
                "lr": lr,
                "train_loss": stats.loss_sum / max(stats.seen, 1),
                "eval_split": monitor_name,
                "val_loss": monitor_loss,
                "val_accuracy": scores["accuracy"],
                "val_roc_auc": scores["roc_auc"],
                "train_images_per_s": stats.seen / max(stats.seconds, 1e-9),
                "epoch_seconds": time.perf_counter() - epoch_started,
                "peak_rss_mb": peak_rss_mb(),
            }
            history.append(row)
            with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            auc = "n/a" if row["val_roc_auc"] is None else f"{row['val_roc_auc']:.4f}"
            log(
                f"epoch {epoch:>3}/{config.total_epochs}  train_loss {row['train_loss']:.4f}  "
                f"{monitor_name}_loss {monitor_loss:.4f}  {monitor_name}_acc {scores['accuracy']:.4f}  "
                f"{monitor_name}_auc {auc}  "
                f"{row['train_images_per_s']:.1f} img/s  {row['epoch_seconds']:.0f}s"
            )

            # Select on validation AUC (then loss); without a validation split, keep the last epoch.
            score = epoch if monitor_name == "test" else (scores["roc_auc"] or 0.0) - 1e-6 * monitor_loss
            epoch_metrics = {f"{monitor_name}_{k}": v for k, v in scores.items()} | {
                f"{monitor_name}_loss": monitor_loss
            }
            if score > best_score:
                best_score, best_epoch = score, epoch
                save_checkpoint(run_dir / BEST, model, config, epoch=epoch, metrics=epoch_metrics)
            save_checkpoint(
                run_dir / LAST,
                model,
                config,
                epoch=epoch,
                metrics=epoch_metrics,
                train_state={
                    "phase": phase.name,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                },
            )
            if on_epoch is not None:
                on_epoch(row)

    best_model = _load_best(run_dir, config, device)
    calibration = None
    if config.calibrate and split["val"]:
        calibration = _calibrate_best(best_model, run_dir, split["val"], config, device, progress)
        log(
            f"calibration on validation: temperature {calibration['temperature']:.3f} (log loss "
            f"{calibration['val_log_loss_before']:.4f} -> {calibration['val_log_loss_after']:.4f}), "
            f"threshold {calibration['threshold']:.4f}"
        )
    checkpoint = read_checkpoint(run_dir / BEST)
    test_metrics = _evaluate(
        best_model, split["test"], config, device, progress, checkpoint["temperature"], checkpoint["threshold"]
    )
    summary = {
        "preset": config.preset,
        "best_epoch": best_epoch,
        "test": test_metrics,
        "calibration": calibration,
        "mean_epoch_seconds": sum(r["epoch_seconds"] for r in history) / max(len(history), 1),
        "peak_rss_mb": peak_rss_mb(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "precision": "float32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "channels_last": config.compute.channels_last,
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    auc = "n/a" if test_metrics["roc_auc"] is None else f"{test_metrics['roc_auc']:.4f}"
    log(
        f"test ({test_metrics['n']} images, best epoch {best_epoch}): accuracy {test_metrics['accuracy']:.4f}  "
        f"roc_auc {auc}  f1 {test_metrics['f1']:.4f}   run saved in {run_dir}"
    )
    return TrainResult(run_dir, best_epoch, test_metrics, history)


def _load_best(run_dir: Path, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    model = build_model(config, pretrained=False).to(device)
    model.load_state_dict(read_checkpoint(run_dir / BEST)["state_dict"])
    return to_memory_format(model, config.compute.channels_last)


def _inference_logits(
    model: torch.nn.Module,
    records: list[ImageRecord],
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits as `facecheck evaluate` computes them: the PIL pipeline of inference, in float32."""
    loader = DataLoader(
        ImageDataset(records, eval_transform(config.preprocess), config.data.min_image_size),
        batch_size=config.eval_batch_size,
        num_workers=config.data.num_workers,
    )
    return loader_logits(model, loader, device, progress, desc, channels_last=config.compute.channels_last)


def _calibrate_best(
    model: torch.nn.Module,
    run_dir: Path,
    val_records: list[ImageRecord],
    config: TrainConfig,
    device: torch.device,
    progress: bool,
) -> dict[str, Any]:
    """Fit temperature and threshold on validation and store them in best.pt."""
    logits, labels = _inference_logits(model, val_records, config, device, progress, "calibration")
    temperature, threshold, report = calibrate(logits, labels, config.target_fpr)
    checkpoint = read_checkpoint(run_dir / BEST)
    save_checkpoint(
        run_dir / BEST,
        model,
        config,
        epoch=checkpoint["epoch"],
        metrics=checkpoint["metrics"],
        threshold=threshold,
        temperature=temperature,
        extra={**checkpoint.get("extra", {}), "calibration": report},
    )
    return report


def _evaluate(
    model: torch.nn.Module,
    test_records: list[ImageRecord],
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    temperature: float,
    threshold: float,
) -> dict[str, Any]:
    if not test_records:
        raise DataError("the test split is empty")
    logits, labels = _inference_logits(model, test_records, config, device, progress, "test")
    p_fake = p_fake_of(logits, temperature)
    loss = mean_cross_entropy(logits, labels, temperature)
    # Every metric evaluate reports (bootstrap intervals aside), so cv can average them all.
    return full_metrics(labels, p_fake, threshold, resamples=0) | {"loss": loss}


def _read_history(run_dir: Path, keep_through: int) -> list[dict[str, Any]]:
    """Rows of earlier epochs; rows past ``keep_through`` (an epoch cut short) are dropped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [row for row in rows if row["epoch"] <= keep_through]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return rows
