"""Compute settings: threads, memory format and mixed precision, chosen per device.

On CPUs with native bfloat16 (AVX512-BF16 / AMX), bf16 autocast plus the
channels-last memory format roughly triples MobileNetV2 training throughput
(benchmarks/speed.py measures it); on CUDA, automatic mixed precision does the
same job. ``precision="fp32"`` reproduces plain float32 arithmetic.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from facecheck.config import PRECISIONS
from facecheck.errors import ConfigError


def cpu_has_native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain float32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16":
        raise ConfigError("precision fp16 is for CUDA only; use bf16 or fp32 on the CPU")
    if precision == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return torch.bfloat16


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device.type, dtype=dtype):
            yield


def to_memory_format(model_or_batch: nn.Module | torch.Tensor, channels_last: bool) -> nn.Module | torch.Tensor:
    if not channels_last:
        return model_or_batch
    if isinstance(model_or_batch, torch.Tensor):
        return (
            model_or_batch.contiguous(memory_format=torch.channels_last)
            if model_or_batch.dim() == 4
            else model_or_batch
        )
    return model_or_batch.to(memory_format=torch.channels_last)


def configure_threads(num_threads: int = 0) -> int:
    """Use ``num_threads`` intra-op threads (0: one per available core); returns the number set."""
    if num_threads <= 0:
        num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        # An explicit OMP_NUM_THREADS from the user wins over the core count.
        num_threads = int(os.environ.get("OMP_NUM_THREADS", num_threads))
    torch.set_num_threads(num_threads)
    return num_threads
