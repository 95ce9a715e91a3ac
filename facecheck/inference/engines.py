"""Inference engines: the same preprocessed batch in, ``p_fake`` out.

Engines return logits; the Detector turns them into calibrated probabilities.
``torch`` runs the checkpoint's model (float32, channels-last memory format:
same results as the plain model, faster on CPUs). ``onnx`` runs an ONNX
export of the same weights in ONNX Runtime, several times faster on CPUs;
the export is made once per checkpoint and kept in the facecheck cache.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from facecheck.choices import INFERENCE_PRECISIONS
from facecheck.compute import configure_threads, cpu_has_native_bf16, to_memory_format
from facecheck.config import PreprocessConfig
from facecheck.errors import FacecheckError
from facecheck.extras import require
from facecheck.files import file_sha256
from facecheck.models import FaceClassifier
from facecheck.paths import cache_folder

# What ``auto`` picks: the first of these whose runtime is installed. The order is benchmarks/speed.py's
# batch-1 latency ranking (MobileNetV2); its file-* variants measure it for the default model.
AUTO_ORDER = ("openvino", "onnx", "torch")
# What each engine needs installed, the ONNX export included (``auto`` picks only an engine it can build).
_RUNTIME_MODULES = {"openvino": ("openvino", "onnx", "onnxscript"), "onnx": ("onnxruntime", "onnx", "onnxscript"),
                    "torch": ("torch",)}  # fmt: skip
# Below this many images ``auto`` keeps torch: exporting (once per checkpoint, ~1 s) and compiling (~0.5 s per
# load) an engine costs more than it saves on a few images at ~20-50 ms each (benchmarks/speed.py, file-*).
AUTO_MIN_IMAGES = 16
# Precisions an OpenVINO engine runs the network in; bf16-checked is a bf16 engine and a float32 one together.
ENGINE_PRECISIONS = ("fp32", "bf16")
# bf16-checked scores again in float32 every input whose bf16 answer lies within this many calibrated logits of
# a decision point, unless the model's card measured its own margin (benchmarks/precision_holds.py; on 512 of
# the shipped model's validation crops, 99% of bf16 errors were within 0.8 and the largest was 1.5).
DEFAULT_CHECK_MARGIN = 1.0


def resolve_engine_precision(precision: str, backend: str, holds: Collection[str] = ()) -> str:
    """The precision the network runs in. ``auto``: ``bf16`` or ``bf16-checked`` where the model's card makes it
    the default (``holds``: measured to keep the verdicts and to run faster, benchmarks/precision_holds.py), the
    engine is OpenVINO and the CPU has native bf16; ``fp32`` everywhere else. A bf16 precision asked for by name needs
    OpenVINO (and native bf16, checked when the engine is built)."""
    if precision not in INFERENCE_PRECISIONS:
        raise FacecheckError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, not {precision!r}")
    if precision.startswith("bf16") and backend != "openvino":
        raise FacecheckError(f"precision {precision} runs on the openvino backend, not {backend} (--backend openvino)")
    if precision != "auto":
        return precision
    if backend != "openvino" or not cpu_has_native_bf16():
        return "fp32"
    return next((choice for choice in ("bf16", "bf16-checked") if choice in holds), "fp32")


def resolve_backend(backend: str, device: torch.device | None = None, images: int | None = None) -> str:
    """``backend``, or for ``auto`` the fastest installed CPU engine (``torch`` on a GPU, and for a known
    workload of fewer than :data:`AUTO_MIN_IMAGES` images)."""
    if backend != "auto":
        return backend
    if device is not None and device.type != "cpu":
        return "torch"
    if images is not None and images < AUTO_MIN_IMAGES:
        return "torch"
    return next(name for name in AUTO_ORDER if all(map(runtime_installed, _RUNTIME_MODULES[name])))


def runtime_installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class TorchEngine:
    name = "torch"
    precision = "fp32"

    def __init__(self, model: FaceClassifier, device: torch.device, channels_last: bool = True) -> None:
        self.device = device
        self.channels_last = channels_last
        self.model = to_memory_format(model.to(device).eval(), channels_last)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """``(B, 2)`` logits."""
        batch = to_memory_format(batch.to(self.device), self.channels_last)
        return self.model(batch).float().cpu().numpy()


class OnnxEngine:
    name = "onnx"
    precision = "fp32"

    def __init__(self, onnx_path: Path | bytes, threads: int = 0) -> None:
        """``onnx_path``: the file, or its bytes (a batch-scoring actor gets the model, not a path of another
        machine)."""
        ort = require("onnxruntime", "export")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or configure_threads(0)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = None if isinstance(onnx_path, bytes) else Path(onnx_path)
        model = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """``(B, 2)`` logits."""
        return self.session.run(None, {self.input_name: batch.cpu().numpy().astype(np.float32, copy=False)})[0]


class OpenVinoEngine:
    """The same ONNX export compiled by OpenVINO for this CPU (lowest batch-1 latency in benchmarks/speed.py)."""

    name = "openvino"

    def __init__(self, onnx_path: Path, threads: int = 0, precision: str = "fp32") -> None:
        """``precision``: ``fp32``, or ``bf16`` (a CPU with native bf16 only: about 2.4x the float32 speed on
        AMX, benchmarks/precision_holds.py)."""
        if precision not in ENGINE_PRECISIONS:
            raise FacecheckError(f"precision must be one of {', '.join(ENGINE_PRECISIONS)}, not {precision!r}")
        if precision == "bf16" and not cpu_has_native_bf16():
            raise FacecheckError(
                "precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX), which this one has not: "
                "use --precision fp32"
            )
        try:
            import openvino as ov
        except ImportError:
            raise FacecheckError("the openvino backend needs OpenVINO: pip install openvino") from None
        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": threads or configure_threads(0),
            "PERFORMANCE_HINT": "LATENCY",
            # Said either way: on CPUs with bf16, OpenVINO would otherwise compute in bf16 unasked.
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        self.precision = precision
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        self.output = self.compiled.output(0)
        self.lock = threading.Lock()  # one infer request, shared: calls take turns

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        """``(B, 2)`` logits."""
        with self.lock:
            return np.asarray(self.compiled(batch.cpu().numpy().astype(np.float32, copy=False))[self.output])


def cached_onnx_export(checkpoint_path: Path, model: FaceClassifier, preprocess: PreprocessConfig) -> Path:
    """The ONNX export of ``checkpoint_path``, made on first use and reused while the file is unchanged."""
    from facecheck.inference.export import export_onnx

    target = cache_folder("onnx") / f"{file_sha256(checkpoint_path)[:32]}.onnx"
    if not target.is_file():
        temporary = target.with_suffix(f".{os.getpid()}.tmp.onnx")
        export_onnx(model, preprocess, temporary)
        temporary.replace(target)
    return target
