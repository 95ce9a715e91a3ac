"""The training loop: epochs with progress, metrics, checkpoints, resume (its data come prepared from preparation.py).

Every epoch reseeds the random generators from ``(seed, epoch)``, so a run
resumed from the last completed epoch draws the same shuffles, augmentations
and dropout masks as an uninterrupted run and ends with the same weights.

Started by torchrun (or ``facecheck train --nproc-per-node N``), the same code
trains one model in several processes: see :mod:`facecheck.training.distributed`
for the rules (global batch, rank 0 writes, caches built once).
"""

from __future__ import annotations

import os
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

from facecheck.card import ModelCard
from facecheck.checkpoint import build_model, card_for, read_checkpoint, save_checkpoint
from facecheck.choices import KEEP_CHECKPOINTS
from facecheck.compute import configure_threads, resolve_precision, to_memory_format
from facecheck.config import TrainConfig, validate
from facecheck.data.discovery import ImageRecord
from facecheck.data.sources import (
    collection_of,
    manifest_metadata,
    resolve_data_dirs,
    resolve_data_root,
)
from facecheck.data.splits import SPLITS
from facecheck.device import resolve_device
from facecheck.errors import DataError
from facecheck.evaluation.calibration import calibrate
from facecheck.evaluation.metrics import classification_metrics, full_metrics, result_warnings
from facecheck.evaluation.scoring import loader_logits, mean_cross_entropy
from facecheck.inference.outputs import p_fake_of
from facecheck.models.registry import with_model_defaults
from facecheck.run_folder import RunFolder, changed_files
from facecheck.training.datasets import RunDatasets, ShardDatasets
from facecheck.training.distributed import RANK_SEED_STRIDE, DistContext, convert_sync_batchnorm
from facecheck.training.preparation import Log, open_shards, prepare_data, prepare_shards
from facecheck.training.runners import ImageRunner, Phase, plan_phases, set_trainable


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
        self.path = run_dir / RunFolder.LOG
        self.flush()

    def flush(self) -> None:
        assert self.path is not None
        with open(self.path, "a", encoding="utf-8", errors="surrogateescape") as handle:
            handle.writelines(line + "\n" for line in self.pending)
        self.pending.clear()


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seed the global RNG (augmentations, dropout) and return the shuffling generator for ``epoch``.

    The global RNG differs per process (``rank``), so processes draw different augmentations;
    the shuffling generator is the same in all of them (they split one shuffle between them).
    """
    torch.manual_seed(seed * 100_003 + epoch + RANK_SEED_STRIDE * rank)
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
    keep: str = "both",
) -> TrainResult:
    """Train ``config`` into ``run_dir``; with ``resume`` continue its last completed epoch.

    A resumed run keeps the saved data, split, preprocessing and model (see
    :class:`~facecheck.run_folder.RunFolder`); ``config`` may only change the
    epochs and compute settings. ``on_epoch`` is called with each epoch's
    metrics row after its checkpoints are written (tuning uses it to prune).
    ``keep="best"`` removes ``last.pt`` once the run has finished (it is needed until then, to resume
    after a crash): the folder is smaller, but the finished run can no longer be resumed or extended.
    """
    if keep not in KEEP_CHECKPOINTS:
        raise DataError(f"keep must be one of {', '.join(KEEP_CHECKPOINTS)}, not {keep!r}")
    run = RunFolder(run_dir)
    # Under torchrun: join the process group; only rank 0 logs, shows progress and writes the run folder.
    dist = DistContext.from_env(resolve_device(config.device).type)
    log = RunLog(quiet or not dist.is_main)
    progress = progress and not quiet and dist.is_main
    lock = None
    try:
        # One writer per run folder: a second `train --out` on it is refused here, before it reads or writes.
        lock = dist.on_main(run.lock, share=False)
        if resume:
            config = run.resume_config(with_model_defaults(config))
            validate(config)
            dist.local_batch_size(config.batch_size)
            shards = open_shards(config)

            def reopen() -> None:
                log.attach(run.path)
                for stale in run.remove_temporary_files():
                    log(f"removed {stale.name}, left by a run killed while writing it")
                state = run.last if run.last.is_file() else "epoch 1 (no epoch had completed)"
                log(f"resuming {run.path} from {state}")

            dist.on_main(reopen)
            split = shards.records() if shards else run.read_split(resolve_data_root(config, log))
        else:
            config = with_model_defaults(config)
            validate(config)
            dist.local_batch_size(config.batch_size)
            shards = open_shards(config)

            def prepare() -> dict[str, list[ImageRecord]]:
                run.check_new()
                prepared = prepare_shards(shards, log) if shards else prepare_data(config, log, progress)
                run.path.mkdir(parents=True, exist_ok=True)
                log.attach(run.path)
                prepared.write(run)
                return prepared.split

            # The other processes read the split rank 0 made (and wrote), rather than redoing the inspection.
            split = dist.on_main(prepare, share=False)
            if not dist.is_main:
                split = shards.records() if shards else run.read_split(resolve_data_root(config, log))
        if dist.is_main:
            run.save_config(config)
        session = TrainingSession(config, run, split, log, progress, dist)
        session.run_phases(on_epoch)
        result = session.finish(keep)
        if keep == "best" and dist.is_main:
            # Only now: until the summary is written, last.pt is what a crashed run resumes from.
            run.last.unlink(missing_ok=True)
            log(f"removed {RunFolder.LAST} (--keep best): this run can no longer be resumed or extended")
        return result
    finally:
        if lock is not None:
            lock.release()
        dist.close()


class TrainingSession:
    """One training run in steps: set-up, the epochs of each phase, then calibration and the test."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunFolder,
        split: dict[str, list[ImageRecord]],
        log: RunLog,
        progress: bool,
        dist: DistContext | None = None,
    ) -> None:
        self.config, self.run, self.split, self.log, self.progress = config, run, split, log, progress
        self.dist = dist = dist or DistContext()
        self.device = dist.device(resolve_device(config.device))
        threads = configure_threads(dist.threads(config.compute.num_threads)) if self.device.type == "cpu" else 0
        self.amp_dtype = resolve_precision(config.compute.precision, self.device)
        processes = ""
        if dist.enabled:
            processes = (
                f", {dist.world_size} processes ({dist.backend}), batch {dist.local_batch_size(config.batch_size)} "
                f"per process (global {config.batch_size}), "
                f"{'synchronised' if config.compute.sync_batchnorm else 'per-process'} BatchNorm statistics"
            )
        log(
            f"compute: {self.device}{f', {threads} threads' if threads else ''}"
            f"{' per process' if threads and dist.enabled else ''}, "
            f"{'float32' if self.amp_dtype is None else str(self.amp_dtype).removeprefix('torch.') + ' autocast'}, "
            f"{'channels-last' if config.compute.channels_last else 'contiguous'} tensors{processes}"
            f"{wait_policy_note()}"
        )
        resuming = run.last.is_file()
        # Seeded so the new layers start the same in every run of this seed. Pretrained weights
        # are only needed for a fresh start; a resumed model gets its trained weights below.
        torch.manual_seed(config.seed)
        model = build_model(config, pretrained=config.model.pretrained and not resuming).to(self.device)
        if dist.enabled and config.compute.sync_batchnorm:
            # Same state dict as plain BatchNorm: checkpoints load into the ordinary model.
            model = convert_sync_batchnorm(model, self.device)
        self.model = to_memory_format(model, config.compute.channels_last)
        self.start_epoch, self.best_score, self.best_epoch, self.saved_state = 1, float("-inf"), 0, None
        if resuming:
            state = read_checkpoint(run.last)
            self.model.load_state_dict(state["state_dict"])
            self.saved_state = state["train_state"]
            self.start_epoch = state["card"].epoch + 1
            self.best_score = float(self.saved_state["best_score"])
            self.best_epoch = int(self.saved_state["best_epoch"])
        # run.history also drops rows of an epoch cut short: rank 0's job (it owns the run folder).
        self.history = run.history(keep_through=self.start_epoch - 1) if dist.is_main else []
        self.monitor_name = "val" if split["val"] else "test"
        if self.monitor_name == "test":
            log(
                "NOTE: no validation split (data.val_fraction=0): per-epoch metrics are on the test split, "
                "and best.pt is simply the last epoch so that no choice is made on test data"
            )
        self.shards = open_shards(config)
        # The images as the run began: one changed or removed since is left out (and listed), never read.
        self.recorded = run.recorded_files(split) if self.shards is None else {}
        if self.shards is None:
            self.leave_out_changed(SPLITS)
        if self.shards is not None:
            self.datasets: RunDatasets | ShardDatasets = ShardDatasets(config, self.shards, self.monitor_name, dist)
        else:
            data_dirs = [str(d) for d in resolve_data_dirs(config, lambda _m: None)]
            self.datasets = RunDatasets(config, split, self.monitor_name, progress, data_dirs, dist)
        if self.start_epoch > config.total_epochs:
            log(f"all {config.total_epochs} epochs are already done")

    def leave_out_changed(self, names: tuple[str, ...]) -> None:
        """Drop from ``names`` the images removed or changed since the run began (logged and in skipped.csv)."""
        for name in names:
            changed = changed_files(self.split[name], self.recorded)
            if not changed:
                continue
            gone = {path for path, _ in changed}
            self.split[name] = [record for record in self.split[name] if str(record.path) not in gone]
            self.log(
                f"WARNING: left out {len(changed)} {name} image(s) changed during the run (in {RunFolder.SKIPPED}):"
            )
            for path, reason in changed[:5]:
                self.log(f"  {path}: {reason}")
            if self.dist.is_main:
                self.run.add_skipped(changed)

    def card(self, epoch: int, metrics: dict[str, Any], **values: Any) -> ModelCard:
        return card_for(self.config, epoch=epoch, metrics=metrics, **values)

    def run_phases(self, on_epoch: Callable[[dict[str, Any]], None] | None) -> None:
        config = self.config
        for phase in plan_phases(config):
            if phase.last_epoch < self.start_epoch:
                continue
            parameters = set_trainable(self.model, phase)
            optimizer = torch.optim.Adam(parameters, lr=phase.lr, weight_decay=config.optim.weight_decay)
            scheduler = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=config.optim.step_size, gamma=config.optim.gamma
            )
            if self.saved_state is not None and self.saved_state.get("phase", "full") == phase.name:
                optimizer.load_state_dict(self.saved_state["optimizer"])
                scheduler.load_state_dict(self.saved_state["scheduler"])
            if phase.name == "head":
                runner = self.datasets.feature_runner(self.model, self.device, self.amp_dtype, self.dist)
                self.log(f"phase head: training the head on cached {config.model.name} features")
            else:
                runner = ImageRunner(
                    self.datasets.train(), self.datasets.monitor(), config, self.device, self.amp_dtype, self.progress,
                    sampler_weights=self.datasets.sampler_weights(), dist=self.dist,
                )  # fmt: skip
                if phase.trainable_blocks:
                    self.log(
                        f"phase {phase.name}: training the last {phase.trainable_blocks} backbone blocks, lr {phase.lr}"
                    )
            for epoch in range(max(self.start_epoch, phase.first_epoch), phase.last_epoch + 1):
                row = self.run_epoch(runner, phase, optimizer, scheduler, epoch)
                if on_epoch is not None:
                    on_epoch(row)

    def run_epoch(self, runner: Any, phase: Phase, optimizer: Any, scheduler: Any, epoch: int) -> dict[str, Any]:
        config, name = self.config, self.monitor_name
        epoch_started = time.perf_counter()
        generator = seed_epoch(config.seed, epoch, self.dist.rank)
        self.datasets.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        desc = f"epoch {epoch}/{config.total_epochs}"
        stats = runner.train_epoch(self.model, phase, optimizer, generator, desc, epoch=epoch)
        scheduler.step()
        # Every process scores with the model rank 0 saves (its BatchNorm statistics included).
        self.dist.sync_buffers(self.model)
        p_fake, labels, monitor_loss = runner.score(self.model, f"{name} {epoch}")
        scores = classification_metrics(labels, p_fake)
        row = {
            "epoch": epoch,
            "phase": phase.name,
            "lr": lr,
            "train_loss": stats.loss_sum / max(stats.seen, 1),
            "eval_split": name,
            "val_loss": monitor_loss,
            "val_accuracy": scores["accuracy"],
            "val_roc_auc": scores["roc_auc"],
            "train_images_per_s": stats.seen / max(stats.seconds, 1e-9),
            "epoch_seconds": time.perf_counter() - epoch_started,
            "peak_rss_mb": peak_rss_mb(),
        }
        self.history.append(row)
        if self.dist.is_main:
            self.run.append_metrics(row)
        auc = "n/a" if row["val_roc_auc"] is None else f"{row['val_roc_auc']:.4f}"
        self.log(
            f"epoch {epoch:>3}/{config.total_epochs}  train_loss {row['train_loss']:.4f}  "
            f"{name}_loss {monitor_loss:.4f}  {name}_acc {scores['accuracy']:.4f}  {name}_auc {auc}  "
            f"{row['train_images_per_s']:.1f} img/s  {row['epoch_seconds']:.0f}s"
        )
        # Select on validation AUC (then loss); without a validation split, keep the last epoch. Every process
        # sees the same gathered scores, so all agree on the best epoch; rank 0 alone writes checkpoints.
        score = epoch if name == "test" else (scores["roc_auc"] or 0.0) - 1e-6 * monitor_loss
        metrics = {f"{name}_{k}": v for k, v in scores.items()} | {f"{name}_loss": monitor_loss}
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            if self.dist.is_main:
                save_checkpoint(self.run.best, self.model, self.card(epoch, metrics))
        train_state = {
            "phase": phase.name,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
        }
        if self.dist.is_main:
            save_checkpoint(self.run.last, self.model, self.card(epoch, metrics), train_state=train_state)
        return row

    def finish(self, keep: str = "both") -> TrainResult:
        """Calibrate best.pt on validation, test it, and write the summary (rank 0; the others get its result).

        ``keep``: the checkpoints kept, as recorded in the summary."""
        return self.dist.on_main(lambda: self._finish(keep))

    def _finish(self, keep: str) -> TrainResult:
        config, run, split, log = self.config, self.run, self.split, self.log
        best_model = _load_best(run, config, self.device)
        if self.shards is None:
            self.leave_out_changed(("val", "test"))  # an image removed while the epochs ran does not stop the summary
        calibration = None
        if config.calibrate and split["val"]:
            calibration = _calibrate_best(best_model, run, self.datasets.inference("val"), split["val"], config,
                                          self.device, self.progress, log)  # fmt: skip
        card = read_checkpoint(run.best)["card"]
        if not split["test"]:
            raise DataError("the test split is empty")
        test_metrics = _evaluate(best_model, self.datasets.inference("test"), config, self.device, self.progress, card)
        history = self.history
        summary = {
            "preset": config.preset,
            "best_epoch": self.best_epoch,
            "test": test_metrics,
            "calibration": calibration,
            "mean_epoch_seconds": sum(r["epoch_seconds"] for r in history) / max(len(history), 1),
            "train_seconds": sum(r["epoch_seconds"] for r in history),
            "peak_rss_mb": peak_rss_mb(),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "precision": "float32" if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch."),
            "channels_last": config.compute.channels_last,
            "kept": [RunFolder.BEST] if keep == "best" else [RunFolder.BEST, RunFolder.LAST],
            "processes": self.dist.world_size,
            "sync_batchnorm": self.dist.enabled and config.compute.sync_batchnorm,
        }
        run.write_json(RunFolder.SUMMARY, summary)
        auc = "n/a" if test_metrics["roc_auc"] is None else f"{test_metrics['roc_auc']:.4f}"
        log(
            f"test ({test_metrics['n']} images, best epoch {self.best_epoch}): "
            f"accuracy {test_metrics['accuracy']:.4f}  roc_auc {auc}  f1 {test_metrics['f1']:.4f}  "
            f"run saved in {run.path}"
        )
        for warning in result_warnings(test_metrics, "test"):
            log(f"WARNING: {warning}")
        return TrainResult(run.path, self.best_epoch, test_metrics, history)


def _load_best(run: RunFolder, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    model = build_model(config, pretrained=False).to(device)
    model.load_state_dict(read_checkpoint(run.best)["state_dict"])
    return to_memory_format(model, config.compute.channels_last)


def _inference_logits(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits as `facecheck evaluate` computes them: the PIL pipeline of inference (``dataset``), in float32."""
    loader = DataLoader(dataset, batch_size=config.eval_batch_size, num_workers=config.data.num_workers)
    return loader_logits(model, loader, device, progress, desc, channels_last=config.compute.channels_last)


def _calibrate_best(
    model: torch.nn.Module,
    run: RunFolder,
    val_set: torch.utils.data.Dataset,
    val_records: list[ImageRecord],
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    log: Log,
) -> dict[str, Any]:
    """Fit temperature, threshold and the uncertain band on validation and store them in best.pt's card."""
    logits, labels = _inference_logits(model, val_set, config, device, progress, "calibration")
    collections = None
    if config.target_fpr is not None and config.target_fpr_scope == "collection":
        metadata = manifest_metadata([str(d) for d in resolve_data_dirs(config, lambda _m: None)])
        collections = [collection_of(metadata.get(r.path.resolve(), {})) for r in val_records]
    result = calibrate(logits, labels, config.target_fpr, collections)
    checkpoint = read_checkpoint(run.best)
    card: ModelCard = checkpoint["card"]
    card = card.with_values(
        threshold=result.threshold,
        temperature=result.temperature,
        uncertain_band=result.band,
        notes={**card.notes, "calibration": result.report},
    )
    save_checkpoint(run.best, model, card)
    report = result.report
    band = "none" if result.band is None else f"{result.band[0]:.3f}-{result.band[1]:.3f}"
    log(
        f"calibration on validation ({len(labels)} images): temperature {result.temperature:.3f} (log loss "
        f"{report['val_log_loss_before']:.4f} -> {report['val_log_loss_after']:.4f}), "
        f"threshold {result.threshold:.4f}, uncertain band {band}"
    )
    for warning in report.get("warnings", []):
        log(f"WARNING: {warning}")
    return report


def wait_policy_note() -> str:
    """How OpenMP's idle threads wait, when set (facecheck.cpu sets PASSIVE on a shared CPU)."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    return f", OpenMP wait policy {policy}" if policy else ""


def _evaluate(
    model: torch.nn.Module,
    test_set: torch.utils.data.Dataset,
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    card: ModelCard,
) -> dict[str, Any]:
    logits, labels = _inference_logits(model, test_set, config, device, progress, "test")
    p_fake = p_fake_of(logits, card.temperature)
    loss = mean_cross_entropy(logits, labels, card.temperature)
    # Every metric evaluate reports (bootstrap intervals aside), so cv can average them all.
    return full_metrics(labels, p_fake, card.threshold, resamples=0) | {"loss": loss}
