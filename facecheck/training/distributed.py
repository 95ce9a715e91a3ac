"""Several processes training one model: DDP over gloo (CPUs) or NCCL (GPUs).

A process learns its place from the variables that ``torchrun`` (and
``facecheck train --nproc-per-node N``, which calls it) sets: ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``. Without them (or with ``WORLD_SIZE=1``) every helper here is
a no-op, so the trainer has one code path.

The rules the trainer follows with them:

- ``batch_size`` is the global batch: each of N processes takes ``batch_size / N``
  images a step (an error when it does not divide), and DDP averages the
  gradients, so a step sees the same global batch as one process would.
- Rank 0 alone prepares the data and writes the run folder and checkpoints;
  the others wait for it and read what it wrote (:meth:`DistContext.on_main`).
- Caches (decoded images, backbone features) are built once by rank 0, then
  by the first process of any node that cannot see them (a node-local cache
  folder), and read by the rest (:meth:`DistContext.build_once`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

from facecheck.cpu import available_cores
from facecheck.errors import ConfigError, FacecheckError

T = TypeVar("T")

# Added to the epoch's seed for rank r's global RNG (augmentations, dropout): ranks draw different
# augmentations; rank 0 draws exactly what a single process draws.
RANK_SEED_STRIDE = 1_000_003


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str = "cpu") -> DistContext:
        """The context torchrun describes in the environment; joins (or reuses) the process group."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        try:
            rank = int(os.environ["RANK"])
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        except (KeyError, ValueError):
            raise ConfigError("WORLD_SIZE is set but RANK is not: start several processes with torchrun") from None
        backend = "nccl" if device_type == "cuda" else "gloo"
        owns = False
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            # env:// rendezvous: MASTER_ADDR and MASTER_PORT come from torchrun.
            dist.init_process_group(backend, rank=rank, world_size=world)
            owns = True
        else:
            backend = dist.get_backend()
        return cls(rank, world, local_rank, local_world, backend, owns)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    # ---- devices and threads ------------------------------------------------------------------
    def device(self, device: torch.device) -> torch.device:
        """Each process of a node gets its own GPU (``cuda:LOCAL_RANK``)."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def threads(self, requested: int) -> int:
        """Intra-op threads for this process: ``requested``, or by default this node's cores / its processes.

        torchrun sets OMP_NUM_THREADS=1 for every worker, so the default does not read it: N processes
        together use the same number of threads as one process would.
        """
        if requested > 0 or not self.enabled:
            return requested
        cores = available_cores()
        return max(1, cores // self.local_world_size)

    def local_batch_size(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise ConfigError(
                f"batch_size {global_batch} is the global batch and must divide among {self.world_size} processes"
            )
        return global_batch // self.world_size

    # ---- collectives --------------------------------------------------------------------------
    def _tensor_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes (float64)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._tensor_device())
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def gather(self, value: T) -> list[T]:
        """Every process's ``value``, in rank order, on every process (our own processes: trusted)."""
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every process."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, work: Callable[[], T], share: bool = True) -> T | None:
        """Run ``work`` on rank 0 only; the others wait, then get its result (``share``; else None), or raise
        its error, so that a failure on rank 0 stops every process instead of leaving them at a barrier."""
        if not self.enabled:
            return work()
        if self.is_main:
            try:
                result = work()
            except BaseException as exc:
                self.broadcast((False, f"{type(exc).__name__}: {exc}"))
                raise
            self.broadcast((True, result if share else None))
            return result
        ok, value = self.broadcast((True, None))
        if not ok:
            raise FacecheckError(f"rank 0 failed: {value}")
        return value

    def build_once(self, load_or_build: Callable[[], T]) -> T:
        """``load_or_build`` (which builds a cache entry when missing, then reads it) with the building done once.

        Rank 0 builds; then the first process of each node that does not see the entry (a node-local
        cache folder) builds it for its node; the rest only read.
        """
        if not self.enabled:
            return load_or_build()
        built = self.on_main(load_or_build, share=False)  # an error on rank 0 stops every process
        if self.local_rank == 0 and not self.is_main:
            load_or_build()
        self.barrier()
        return built if self.is_main else load_or_build()

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over processes); itself when alone."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.local_rank] if self.backend == "nccl" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) everywhere: every process then holds the model that
        rank 0 checkpoints, before validation shards are scored on each."""
        if not self.enabled:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def seed_base(seed: int) -> int:
    """The seed of the epoch-0 shuffle; epoch ``e`` shuffles with ``seed_base + e`` (see trainer.seed_epoch)."""
    return seed * 100_003 + 50_000


class ShardedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, one draw shared by all processes, each taking its share.

    Every process draws the same ``len(weights)`` indices (seeded by seed and epoch), pads them to a
    multiple of the number of processes by repeating the first ones, and keeps every N-th from its rank,
    as :class:`~torch.utils.data.distributed.DistributedSampler` does for a uniform shuffle.
    """

    def __init__(self, weights: torch.Tensor, seed: int, rank: int, world_size: int) -> None:
        self.weights, self.seed, self.rank, self.world_size = weights, seed, rank, world_size
        self.count = len(weights)
        self.per_rank = -(-self.count // world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.count, replacement=True, generator=generator).tolist()
        drawn += drawn[: self.per_rank * self.world_size - self.count]
        return iter(drawn[self.rank :: self.world_size])


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes, differentiable: the gradient of a sum that every process uses is the sum of
    their gradients (DDP then averages the parameters' gradients, as for any loss)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch, over gloo.

    PyTorch's ``nn.SyncBatchNorm`` runs on GPUs only. This one reduces the per-channel count, sum and
    sum of squares of every process in one differentiable all-reduce, so gradients flow through the
    statistics as in one process. Its state dict is BatchNorm's: checkpoints load into the plain model. Outside
    training, or alone, it is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [d for d in range(x.dim()) if d != 1]
        values = x.float()
        count = torch.tensor([values.numel() / values.shape[1]], dtype=torch.float32, device=x.device)
        local = torch.cat([values.sum(dims), (values * values).sum(dims), count])
        total = _AllReduceSum.apply(local)
        channels = values.shape[1]
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        shape = [1, channels] + [1] * (x.dim() - 2)
        out = (values - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers synchronised across processes: torch's SyncBatchNorm on GPUs, ours on CPUs."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm):
        converted = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        converted.to(next(iter(module.state_dict().values())).device)
        if module.affine:
            converted.weight.requires_grad_(module.weight.requires_grad)
            converted.bias.requires_grad_(module.bias.requires_grad)
        return converted
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu(child))
    return module
