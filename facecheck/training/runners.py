"""What one epoch means in each training phase: full images, or cached backbone features.

A run is a list of phases (see :func:`plan_phases`): ordinary training is one
``full`` phase; frozen-backbone training is a ``head`` phase on cached
features, optionally followed by an ``unfreeze`` phase that fine-tunes the
last backbone blocks on images. Epoch numbers run on across phases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from tqdm import tqdm

from facecheck.compute import autocast, compile_model, to_memory_format
from facecheck.config import TrainConfig
from facecheck.errors import FacecheckError
from facecheck.evaluation.scoring import score_loader
from facecheck.models import FaceClassifier


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
    ) -> None:
        self.train_set, self.config, self.device, self.amp_dtype = train_set, config, device, amp_dtype
        # Per-item weights for balanced batches (None: a uniform shuffle).
        self.sampler_weights = sampler_weights
        self.channels_last = config.compute.channels_last
        self.progress = progress
        self.monitor_loader = DataLoader(
            monitor_set, batch_size=config.eval_batch_size, num_workers=config.data.num_workers
        )
        self.step: TrainStep | None = None

    def train_epoch(
        self,
        model: FaceClassifier,
        phase: Phase,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        desc: str,
    ) -> EpochStats:
        sampler = None
        if self.sampler_weights is not None:
            sampler = WeightedRandomSampler(self.sampler_weights, len(self.train_set), generator=generator)
        loader = DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator,
            num_workers=self.config.data.num_workers,
        )
        set_train_mode(model, phase)
        if self.step is None or self.step.optimizer is not optimizer:  # one compilation per phase at most
            compile_step = self.config.compute.compile and self.device.type == "cpu"
            self.step = TrainStep(model, optimizer, self.device, self.amp_dtype, self.channels_last, compile_step)
        self.step.where = desc
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=desc, unit="batch", disable=not self.progress, leave=False)
        for images, targets in bar:
            loss = self.step(images, targets)
            seen += len(targets)
            loss_sum += loss * len(targets)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", img_s=f"{seen / (time.perf_counter() - started):.1f}")
        return EpochStats(seen, loss_sum, time.perf_counter() - started)

    def score(self, model: FaceClassifier, desc: str) -> tuple[np.ndarray, np.ndarray, float]:
        return score_loader(
            model,
            self.monitor_loader,
            self.device,
            progress=self.progress,
            desc=desc,
            amp_dtype=self.amp_dtype,
            channels_last=self.channels_last,
        )


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
    ) -> None:
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
    ) -> EpochStats:
        set_train_mode(model, phase)
        loss_fn = nn.CrossEntropyLoss()
        started, seen, loss_sum = time.perf_counter(), 0, 0.0
        count = self.labels.shape[0]
        order = torch.randperm(count, generator=generator).to(self.views.device)
        view = torch.randint(len(self.views), (count,), generator=generator).to(self.views.device)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            features, targets = self.views[view[index], index], self.labels[index]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model.head(features), targets)
            check_finite(loss, desc)
            loss.backward()
            optimizer.step()
            seen += len(index)
            loss_sum += loss.item() * len(index)
        return EpochStats(seen, loss_sum, time.perf_counter() - started)

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
