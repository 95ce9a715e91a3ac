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
from facecheck.cpu import available_cores
from facecheck.errors import ConfigError

# /proc/cpuinfo flags that matter for facecheck's arithmetic, under the names we report them by.
CPU_FEATURE_FLAGS = {
    "avx2": "avx2",
    "avx512": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "avx512_bf16": "avx512_bf16",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
}


def parse_cpu_flags(cpuinfo: str) -> dict[str, bool]:
    """Which of :data:`CPU_FEATURE_FLAGS` the first ``flags`` line of a /proc/cpuinfo text lists."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    return {name: flag in flags for name, flag in CPU_FEATURE_FLAGS.items()}


def cpu_features() -> dict[str, object]:
    """The CPU's vector features (from /proc/cpuinfo), PyTorch's kernel level and whether bf16 is native."""
    from pathlib import Path

    try:
        features: dict[str, object] = dict(parse_cpu_flags(Path("/proc/cpuinfo").read_text()))
    except OSError:
        features = {}
    try:
        features["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        features["torch_cpu_capability"] = None
    features["native_bf16"] = cpu_has_native_bf16()
    return features


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


def compile_model(model: nn.Module) -> nn.Module:
    """``model`` compiled by TorchInductor for training (BatchNorm, activations and pads fused into fewer kernels).

    The compilation runs on the first batch (tens of seconds on a small CPU) and again
    once for the smaller last batch of an epoch; the weights stay those of ``model``.
    """
    return torch.compile(model)


def configure_threads(num_threads: int = 0) -> int:
    """Use ``num_threads`` intra-op threads (0: one per available core); returns the number set."""
    if num_threads <= 0:
        num_threads = available_cores()
        # An explicit OMP_NUM_THREADS from the user wins over the core count.
        num_threads = int(os.environ.get("OMP_NUM_THREADS", num_threads))
    torch.set_num_threads(num_threads)
    return num_threads


def describe_machine() -> dict[str, object]:
    """What a measurement ran on: CPU, cores, memory, bf16, GPU, versions, load and date (for benchmarks)."""
    import platform
    import time
    from pathlib import Path

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gib: float | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gib = None
    return {
        "cpu": cpu,
        "cores_available": available_cores(),
        "memory_gib": round(memory_gib, 1) if memory_gib else None,
        "native_bf16": cpu_has_native_bf16(),
        "cpu_features": cpu_features(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "os": platform.platform(),
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
