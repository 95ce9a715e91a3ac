"""What one epoch means in each training phase: full images, or cached backbone features.

A run is a list of phases (see :func:`plan_phases`): ordinary training is one
``full`` phase; frozen-backbone training is a ``head`` phase on cached
features, optionally followed by an ``unfreeze`` phase that fine-tunes the
last backbone blocks on images. Epoch numbers run on across phases.

With several processes (see :mod:`facecheck.training.distributed`) each runner
trains on its share of every global batch under DDP, reduces the epoch's loss
sums and counts over the processes, and scores validation in shards that are
gathered, so every process reports the same metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from facecheck.compute import autocast, compile_model, to_memory_format
from facecheck.config import TrainConfig
from facecheck.errors import FacecheckError
from facecheck.evaluation.scoring import score_loader
from facecheck.models import FaceClassifier
from facecheck.training.distributed import DistContext, ShardedWeightedSampler, seed_base


@dataclass(frozen=True)
class Phase:
    name: str  # "full", "head" or "unfreeze"
    first_epoch: int
    last_epoch: int
    lr: float
    trainable_blocks: int | None  # None: the whole backbone; 0: head only; N: the last N blocks


def plan_phases(config: TrainConfig) -> list[Phase]:
    if not config.freeze_backbone:
        return [Phase("full", 1, config.epochs, config.optim.lr, config.model.trainable_blocks)]
    phases = [Phase("head", 1, config.epochs, config.optim.lr, 0)]
    if config.unfreeze_blocks > 0 and config.unfreeze_epochs > 0:
        last = config.epochs + config.unfreeze_epochs
        phases.append(Phase("unfreeze", config.epochs + 1, last, config.unfreeze_lr, config.unfreeze_blocks))
    return phases


def set_trainable(model: FaceClassifier, phase: Phase) -> list[nn.Parameter]:
    """Freeze what ``phase`` keeps fixed; return the parameters it trains."""
    if phase.trainable_blocks is not None and phase.trainable_blocks > len(model.blocks):
        raise FacecheckError(f"cannot unfreeze {phase.trainable_blocks} blocks: the backbone has {len(model.blocks)}")
    model.backbone.requires_grad_(phase.trainable_blocks is None)
    if phase.trainable_blocks:
        for block in model.blocks[-phase.trainable_blocks :]:
            block.requires_grad_(True)
    model.head.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def set_train_mode(model: FaceClassifier, phase: Phase) -> None:
    """Train mode, except frozen parts: their BatchNorm statistics must stay as they are."""
    model.train()
    if phase.trainable_blocks is not None:
        model.backbone.eval()
        if phase.trainable_blocks:
            for block in model.blocks[-phase.trainable_blocks :]:
                block.train()


@dataclass
class EpochStats:
    seen: int
    loss_sum: float
    seconds: float


class TrainStep:
    """One optimisation step on a batch: forward (compiled when asked), loss, backward, optimizer step."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        channels_last: bool,
        compile: bool = False,
        where: str = "training",
    ) -> None:
        self.optimizer, self.device, self.amp_dtype, self.channels_last = optimizer, device, amp_dtype, channels_last
        self.forward = compile_model(model) if compile else model
        self.loss_fn = nn.CrossEntropyLoss()
        # Loss scaling is needed for float16 only (bfloat16 has float32's range).
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.where = where

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """The batch's mean loss (before the step)."""
        images = to_memory_format(images.to(self.device), self.channels_last)
        targets = targets.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp_dtype):
            loss = self.loss_fn(self.forward(images).float(), targets)
        check_finite(loss, self.where)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()


class ImageRunner:
    """Epochs over decoded images with random augmentation, in the configured precision."""

    def __init__(
        self,
        train_set: Dataset,
        monitor_set: Dataset,
        config: TrainConfig,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        progress: bool,
        sampler_weights: torch.Tensor | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.train_set, self.config, self.device, self.amp_dtype = train_set, config, device, amp_dtype
        # Per-item weights for balanced batches (None: a uniform shuffle).
        self.sampler_weights = sampler_weights
        self.channels_last = config.compute.channels_last
        self.progress = progress
        self.dist = dist = dist or DistContext()
        # Validation in shards: process r scores items r, r + N, ... (a stream: its r-th shards); score() gathers.
        if dist.enabled:
            if isinstance(monitor_set, IterableDataset):
                monitor_set = monitor_set.for_rank(dist.rank, dist.world_size)
            else:
                monitor_set = Subset(monitor_set, range(dist.rank, len(monitor_set), dist.world_size))
        self.monitor_loader = DataLoader(
            monitor_set, batch_size=config.eval_batch_size, num_workers=config.data.num_workers
        )
        self.step: TrainStep | None = None

    def sampler(self, generator: torch.Generator, epoch: int) -> torch.utils.data.Sampler:
        """This process's share of the epoch's order.

        A uniform shuffle is a DistributedSampler (one process: all of it) seeded so that epoch ``e``
        permutes with the seed of :func:`~facecheck.training.trainer.seed_epoch`'s generator: N processes
        split exactly the order one process would follow, so global batches hold the same images.
        """
        dist = self.dist
        if self.sampler_weights is not None:
            if not dist.enabled:
                return WeightedRandomSampler(self.sampler_weights, len(self.train_set), generator=generator)
            sampler = ShardedWeightedSampler(self.sampler_weights, seed_base(self.config.seed), dist.rank,
                                             dist.world_size)  # fmt: skip
        else:
            sampler = DistributedSampler(
                self.train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                seed=seed_base(self.config.seed), drop_last=False,
            )  # fmt: skip
        sampler.set_epoch(epoch)
        return sampler

    def train_epoch(
        self,
        model: FaceClassifier,
        phase: Phase,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        desc: str,
        epoch: int = 1,
    ) -> EpochStats:
        # A stream (shards) orders and divides itself among processes and workers (see ShardStream).
        streamed = isinstance(self.train_set, IterableDataset)
        loader = DataLoader(
            self.train_set,
            batch_size=self.dist.local_batch_size(self.config.batch_size),
            sampler=None if streamed else self.sampler(generator, epoch),
            generator=generator,
            num_workers=self.config.data.num_workers,
        )
        set_train_mode(model, phase)
        if self.step is None or self.step.optimizer is not optimizer:  # one compilation per phase at most
            compile_step = self.config.compute.compile and self.device.type == "cpu"
            # DDP is wrapped here, after set_trainable: it registers only the parameters the phase trains.
            forward = self.dist.wrap(model)
            self.step = TrainStep(forward, optimizer, self.device, self.amp_dtype, self.channels_last, compile_step)
        self.step.where = desc
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=desc, unit="batch", disable=not self.progress, leave=False)
        for images, targets in bar:
            loss = self.step(images, targets)
            seen += len(targets)
            loss_sum += loss * len(targets)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen / (time.perf_counter() - started):.1f}")
        return reduced_stats(self.dist, seen, loss_sum, time.perf_counter() - started)

    def score(self, model: FaceClassifier, desc: str) -> tuple[np.ndarray, np.ndarray, float]:
        dataset = self.monitor_loader.dataset
        if not isinstance(dataset, IterableDataset) and len(dataset) == 0:  # more processes than images
            p_fake, labels, loss = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64), 0.0
        else:
            p_fake, labels, loss = score_loader(
                model,
                self.monitor_loader,
                self.device,
                progress=self.progress,
                desc=desc,
                amp_dtype=self.amp_dtype,
                channels_last=self.channels_last,
            )
        if not self.dist.enabled:
            return p_fake, labels, loss
        # Metrics do not depend on the order of the images: the shards are joined in rank order.
        shards = self.dist.gather((p_fake, labels, loss * len(labels) if len(labels) else 0.0))
        count = sum(len(shard[1]) for shard in shards)
        total_loss = sum(shard[2] for shard in shards) / max(count, 1)
        return np.concatenate([s[0] for s in shards]), np.concatenate([s[1] for s in shards]), total_loss


def reduced_stats(dist: DistContext, seen: int, loss_sum: float, seconds: float) -> EpochStats:
    """The epoch's image count and loss sum over all processes (each process's own when alone)."""
    total_seen, total_loss = dist.sum([seen, loss_sum])
    return EpochStats(int(total_seen), total_loss, seconds)


class FeatureRunner:
    """Epochs over cached backbone features: only the head runs, so an epoch takes milliseconds.

    ``train_views`` holds one feature matrix per view of the training images
    (plain, and mirrored when flips are part of the augmentation); each epoch
    draws one view per image at random, which is the flip augmentation.
    """

    def __init__(
        self,
        train_views: list[torch.Tensor],
        train_labels: torch.Tensor,
        monitor_features: torch.Tensor,
        monitor_labels: torch.Tensor,
        config: TrainConfig,
        device: torch.device,
        dist: DistContext | None = None,
    ) -> None:
        self.dist = dist or DistContext()
        self.head: nn.Module | None = None  # the head under DDP, made at the phase's first epoch
        self.views = torch.stack(train_views).to(device)
        self.labels = train_labels.to(device)
        self.monitor_features = monitor_features.to(device)
        self.monitor_labels = monitor_labels.to(device)
        self.batch_size = config.batch_size
        self.eval_batch_size = config.eval_batch_size

    def train_epoch(
        self,
        model: FaceClassifier,
        phase: Phase,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        desc: str,
        epoch: int = 1,
    ) -> EpochStats:
        set_train_mode(model, phase)
        if self.head is None:
            self.head = self.dist.wrap(model.head)
        loss_fn = nn.CrossEntropyLoss()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        count = self.labels.shape[0]
        order = torch.randperm(count, generator=generator).to(self.views.device)
        view = torch.randint(len(self.views), (count,), generator=generator).to(self.views.device)
        # Each process takes every N-th of one shared order (padded to a multiple of N, as DistributedSampler
        # pads), so that its k-th batch is its share of the k-th global batch of one process.
        world, batch = self.dist.world_size, self.dist.local_batch_size(self.batch_size)
        padding = -count % world
        order = torch.cat([order, order[:padding]])[self.dist.rank :: world]
        for start in range(0, len(order), batch):
            index = order[start : start + batch]
            features, targets = self.views[view[index], index], self.labels[index]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(self.head(features), targets)
            check_finite(loss, desc)
            loss.backward()
            optimizer.step()
            seen += len(index)
            loss_sum += loss.item() * len(index)
        return reduced_stats(self.dist, seen, loss_sum, time.perf_counter() - started)

    @torch.inference_mode()
    def score(self, model: FaceClassifier, desc: str) -> tuple[np.ndarray, np.ndarray, float]:
        model.eval()
        logits = torch.cat(
            [
                model.head(self.monitor_features[start : start + self.eval_batch_size])
                for start in range(0, len(self.monitor_labels), self.eval_batch_size)
            ]
        )
        loss = nn.functional.cross_entropy(logits, self.monitor_labels).item()
        p_fake = torch.softmax(logits, dim=1)[:, 1].cpu().numpy()
        return p_fake, self.monitor_labels.cpu().numpy(), loss


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise FacecheckError(f"training diverged in {where} (loss {loss.item()}); try a lower optim.lr")
