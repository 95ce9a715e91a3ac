"""Checkpoints: one self-describing file, written atomically, read without running code.

A checkpoint holds the weights, the model name and its build arguments, the
class names, the preprocessing, the full training config, the metrics at save
time, the decision threshold and the package versions. ``last.pt`` also holds
the optimizer, scheduler and RNG state needed to resume.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
import torchvision

from facecheck import __version__
from facecheck.config import PreprocessConfig, TrainConfig
from facecheck.data.discovery import CLASS_NAMES
from facecheck.data.presets import input_size
from facecheck.errors import CheckpointError, ConfigError
from facecheck.models import FaceClassifier, create_model

FORMAT = "facecheck-checkpoint"
FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"


def model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """The build arguments of ``config``'s model (stored so inference can rebuild it)."""
    return {
        "image_size": input_size(config.preprocess),
        "hidden_dim": config.model.hidden_dim,
        "input_filter": config.model.input_filter,
        "dropout": config.model.dropout,
    }


def build_model(config: TrainConfig, pretrained: bool | None = None) -> FaceClassifier:
    use_pretrained = config.model.pretrained if pretrained is None else pretrained
    return create_model(
        config.model.name,
        pretrained=use_pretrained,
        weights=config.model.weights if use_pretrained else None,
        **model_kwargs(config),
    )


def versions() -> dict[str, str]:
    return {
        "facecheck": __version__,
        "torch": str(torch.__version__),  # TorchVersion is not a plain str: weights_only would refuse it
        "torchvision": str(torchvision.__version__),
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | Path,
    model: FaceClassifier,
    config: TrainConfig,
    *,
    epoch: int,
    metrics: dict[str, Any],
    threshold: float = 0.5,
    temperature: float = 1.0,
    train_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": config.model.name,
        "model_kwargs": model_kwargs(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "class_names": list(CLASS_NAMES),
        "preprocess": config.to_dict()["preprocess"],
        "config": config.to_dict(),
        "epoch": epoch,
        "metrics": metrics,
        "threshold": float(threshold),
        "temperature": float(temperature),
        "versions": versions(),
        "extra": extra or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, Path(path))


def atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact, never a truncated one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def resolve_checkpoint_path(model: str | Path) -> Path:
    """Accept a run folder (uses its best.pt, else last.pt) or a checkpoint file."""
    path = Path(model).expanduser()
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"no checkpoint ({BEST} or {LAST}) in run folder {path}")
    if not path.exists():
        raise CheckpointError(f"model not found: {path}")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's contents safely (``weights_only=True``: no code runs)."""
    path = resolve_checkpoint_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a checkpoint"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable facecheck checkpoint ({first_line[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a facecheck checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer facecheck (format {payload['format_version']})")
    return payload


def load_model(path: str | Path) -> tuple[FaceClassifier, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint; returns ``(model in eval mode, checkpoint)``."""
    payload = read_checkpoint(path)
    try:
        model = create_model(payload["model_name"], pretrained=False, **payload["model_kwargs"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit model {payload['model_name']!r} ({str(exc).splitlines()[0][:200]})"
        ) from None
    model.eval()
    return model, payload


def preprocess_of(payload: dict[str, Any]) -> PreprocessConfig:
    return TrainConfig.from_dict({"preprocess": payload["preprocess"]}).preprocess


def config_of(payload: dict[str, Any]) -> TrainConfig:
    return TrainConfig.from_dict(payload["config"])
