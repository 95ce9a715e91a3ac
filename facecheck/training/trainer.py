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

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facecheck.checkpoint import BEST, LAST, build_model, read_checkpoint, save_checkpoint
from facecheck.config import TrainConfig, save_config, validate
from facecheck.data.dataset import ImageDataset, scan_readable
from facecheck.data.discovery import ImageRecord, count_by_class, discover, limit_per_class
from facecheck.data.presets import eval_transform, train_transform
from facecheck.data.splits import make_split, read_split, write_split
from facecheck.data.synthetic import make_synthetic_dataset
from facecheck.device import resolve_device
from facecheck.errors import DataError, FacecheckError
from facecheck.evaluation.metrics import classification_metrics
from facecheck.evaluation.scoring import score_loader

CONFIG_FILE = "config.yaml"
SPLIT_FILE = "split.csv"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped.csv"
LOG_FILE = "train.log"

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

    def write(self, run_dir: Path) -> None:
        write_split(self.split, run_dir / SPLIT_FILE, self.root)
        if self.unreadable:
            with open(run_dir / SKIPPED_FILE, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "reason"])
                writer.writerows(self.unreadable)


def prepare_data(config: TrainConfig, log: Log, progress: bool) -> PreparedData:
    """Discover, check and split the images (nothing is written yet)."""
    data_dir = resolve_data_dir(config, log)
    records = discover(data_dir)
    counts = count_by_class(records)
    log(f"found {len(records)} images in {data_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if config.data.max_per_class is not None:
        records = limit_per_class(records, config.data.max_per_class)
        log(f"using at most {config.data.max_per_class} per class: {count_by_class(records)}")
    records, bad = scan_readable(records, config.data.min_image_size, progress=progress)
    if bad:
        log(f"WARNING: skipped {len(bad)} unusable image(s) (all listed in the run's {SKIPPED_FILE}):")
        for path, reason in bad[:5]:
            log(f"  {path}: {reason}")
    split = make_split(records, config.data.test_fraction, config.data.val_fraction, config.data.split_seed)
    log("split: " + ", ".join(f"{name} {len(part)} {count_by_class(part)}" for name, part in split.items() if part))
    return PreparedData(data_dir, split, bad)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed the global RNG (augmentations, dropout) and return the shuffling generator for ``epoch``."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000)


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(
    config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True, quiet: bool = False
) -> TrainResult:
    """Train ``config`` into ``run_dir``; with ``resume`` continue its last completed epoch."""
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

    # Seeded so the new layers start the same in every run of this seed.
    # Pretrained weights are only needed for a fresh start; a resumed model gets its trained weights below.
    torch.manual_seed(config.seed)
    model = build_model(config, pretrained=config.model.pretrained and not resume).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.optim.step_size, gamma=config.optim.gamma)
    start_epoch, best_score, best_epoch = 1, float("-inf"), 0
    if resume:
        state = read_checkpoint(run_dir / LAST)
        model.load_state_dict(state["state_dict"])
        train_state = state["train_state"]
        optimizer.load_state_dict(train_state["optimizer"])
        scheduler.load_state_dict(train_state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_score, best_epoch = float(train_state["best_score"]), int(train_state["best_epoch"])
    history = _read_history(run_dir, keep_through=start_epoch - 1)

    train_set = ImageDataset(split["train"], train_transform(config.preprocess), config.data.min_image_size)
    monitor_name = "val" if split["val"] else "test"
    monitor_set = ImageDataset(split[monitor_name], eval_transform(config.preprocess), config.data.min_image_size)
    if monitor_name == "test":
        log(
            "NOTE: no validation split (data.val_fraction=0): per-epoch metrics are on the test split, "
            "and best.pt is simply the last epoch so that no choice is made on test data"
        )
    monitor_loader = DataLoader(monitor_set, batch_size=config.eval_batch_size, num_workers=config.data.num_workers)
    loss_fn = nn.CrossEntropyLoss()

    if start_epoch > config.epochs:
        log(f"all {config.epochs} epochs are already done")
    for epoch in range(start_epoch, config.epochs + 1):
        generator = seed_epoch(config.seed, epoch)
        loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=config.data.num_workers,
        )
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        started = time.perf_counter()
        seen, loss_sum = 0, 0.0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", unit="batch", disable=not progress, leave=False)
        for images, targets in bar:
            images, targets = images.to(device), targets.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(images), targets)
            if not torch.isfinite(loss):
                raise FacecheckError(f"training diverged at epoch {epoch} (loss {loss.item()}); try a lower optim.lr")
            loss.backward()
            optimizer.step()
            seen += len(targets)
            loss_sum += loss.item() * len(targets)
            elapsed = time.perf_counter() - started
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen / elapsed:.1f}")
        train_seconds = time.perf_counter() - started
        scheduler.step()

        p_fake, labels, monitor_loss = score_loader(
            model, monitor_loader, device, progress, desc=f"{monitor_name} {epoch}"
        )
        scores = classification_metrics(labels, p_fake)
        row = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": loss_sum / max(seen, 1),
            "eval_split": monitor_name,
            "val_loss": monitor_loss,
            "val_accuracy": scores["accuracy"],
            "val_roc_auc": scores["roc_auc"],
            "train_images_per_s": seen / train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "peak_rss_mb": peak_rss_mb(),
        }
        history.append(row)
        with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        auc = "n/a" if row["val_roc_auc"] is None else f"{row['val_roc_auc']:.4f}"
        log(
            f"epoch {epoch:>3}/{config.epochs}  train_loss {row['train_loss']:.4f}  "
            f"{monitor_name}_loss {monitor_loss:.4f}  {monitor_name}_acc {scores['accuracy']:.4f}  "
            f"{monitor_name}_auc {auc}  "
            f"{row['train_images_per_s']:.1f} img/s  {row['epoch_seconds']:.0f}s"
        )

        # Select on validation AUC (then loss); without a validation split, keep the last epoch.
        score = epoch if monitor_name == "test" else (scores["roc_auc"] or 0.0) - 1e-6 * monitor_loss
        epoch_metrics = {f"{monitor_name}_{k}": v for k, v in scores.items()} | {f"{monitor_name}_loss": monitor_loss}
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
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_score": best_score,
                "best_epoch": best_epoch,
            },
        )

    test_metrics = _evaluate_best(run_dir, split["test"], config, device, progress)
    summary = {
        "preset": config.preset,
        "best_epoch": best_epoch,
        "test": test_metrics,
        "mean_epoch_seconds": sum(r["epoch_seconds"] for r in history) / max(len(history), 1),
        "peak_rss_mb": peak_rss_mb(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    auc = "n/a" if test_metrics["roc_auc"] is None else f"{test_metrics['roc_auc']:.4f}"
    log(
        f"test ({test_metrics['n']} images, best epoch {best_epoch}): accuracy {test_metrics['accuracy']:.4f}  "
        f"roc_auc {auc}  f1 {test_metrics['f1']:.4f}   run saved in {run_dir}"
    )
    return TrainResult(run_dir, best_epoch, test_metrics, history)


def _evaluate_best(
    run_dir: Path, test_records: list[ImageRecord], config: TrainConfig, device: torch.device, progress: bool
) -> dict[str, Any]:
    if not test_records:
        raise DataError("the test split is empty")
    model = build_model(config, pretrained=False).to(device)
    model.load_state_dict(read_checkpoint(run_dir / BEST)["state_dict"])
    loader = DataLoader(
        ImageDataset(test_records, eval_transform(config.preprocess), config.data.min_image_size),
        batch_size=config.eval_batch_size,
        num_workers=config.data.num_workers,
    )
    p_fake, labels, loss = score_loader(model, loader, device, progress, desc="test")
    return classification_metrics(labels, p_fake) | {"loss": loss}


def _read_history(run_dir: Path, keep_through: int) -> list[dict[str, Any]]:
    """Rows of earlier epochs; rows past ``keep_through`` (an epoch cut short) are dropped."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [row for row in rows if row["epoch"] <= keep_through]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return rows
