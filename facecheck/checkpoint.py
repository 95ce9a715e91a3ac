"""Checkpoints: a model card plus weights in one file, written atomically, read without running code.

A checkpoint holds the :class:`~facecheck.card.ModelCard` (model name and
build arguments, classes, preprocessing, threshold, temperature, training
config, metrics, versions) and the weights. ``last.pt`` also holds the
optimizer, scheduler and best-so-far state needed to resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from facecheck.card import ModelCard
from facecheck.config import TrainConfig
from facecheck.data.transforms import input_size
from facecheck.errors import CheckpointError, ConfigError
from facecheck.files import atomic_open, interruptions_deferred
from facecheck.models import FaceClassifier, create_model

FORMAT = "facecheck-checkpoint"
FORMAT_VERSION = 2
BEST, LAST = "best.pt", "last.pt"
# Refuse tensors no facecheck model could have before building anything (a crafted file could ask for GBs).
MAX_PARAMETERS = 200_000_000


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


def card_for(config: TrainConfig, **values: Any) -> ModelCard:
    """The model card of a model built from ``config`` (``values``: epoch, metrics, threshold, ...)."""
    return ModelCard.from_config(config, model_kwargs(config), **values)


def build_from_card(card: ModelCard, where: str = "model") -> FaceClassifier:
    """The card's network with fresh weights; its size is checked on the meta device first (allocates nothing)."""
    try:
        with torch.device("meta"):
            shape_only = create_model(card.model_name, pretrained=False, **card.model_kwargs)
        if sum(p.numel() for p in shape_only.parameters()) > MAX_PARAMETERS:
            raise CheckpointError(f"{where}: the model card describes a network larger than any facecheck model")
        return create_model(card.model_name, pretrained=False, **card.model_kwargs)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def save_checkpoint(
    path: str | Path, model: FaceClassifier, card: ModelCard, train_state: dict[str, Any] | None = None
) -> None:
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "card": card.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    atomic_torch_save(payload, Path(path))


def atomic_torch_save(payload: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact, never a truncated one;
    the run folder removes temporary files that a hard kill left behind. Ctrl-C or SIGTERM during the
    write takes effect once the file is complete.
    """
    with interruptions_deferred(), atomic_open(path, "wb") as stream:
        torch.save(payload, stream)


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
    """Load a checkpoint's contents safely (``weights_only=True``: no code runs); ``card`` is a ModelCard."""
    path = resolve_checkpoint_path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a zip file (old format or garbage): try the plain loader
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a checkpoint"
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path} is not a readable facecheck checkpoint ({first_line[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a facecheck checkpoint (no '{FORMAT}' marker)")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer facecheck (format {version})")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no weights")
    if sum(v.numel() for v in state.values()) > MAX_PARAMETERS:
        raise CheckpointError(f"{path} holds more weights than any facecheck model")
    payload["card"] = ModelCard.from_dict(payload["card"] if version >= 2 else payload, str(path))
    return payload


def read_card(path: str | Path) -> ModelCard:
    return read_checkpoint(path)["card"]


def load_weights(model: FaceClassifier, state: dict[str, torch.Tensor], where: str) -> FaceClassifier:
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and expected[key].shape != tensor.shape:
            raise CheckpointError(f"{where}: weights do not fit model (tensor {key} has shape {tuple(tensor.shape)})")
    try:
        model.load_state_dict({k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the model ({str(exc).splitlines()[0][:200]})") from None
    return model.eval()


def load_model(path: str | Path) -> tuple[FaceClassifier, ModelCard]:
    """Rebuild the model stored in a checkpoint; returns ``(model in eval mode, its card)``."""
    payload = read_checkpoint(path)
    card: ModelCard = payload["card"]
    model = build_from_card(card, str(path))
    return load_weights(model, payload["state_dict"], str(path)), card
