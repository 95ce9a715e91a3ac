"""The detector shipped inside the package: float16 weights (safetensors) and its model card (JSON).

Nothing in these files can run code: safetensors holds tensors only, the card
is JSON, and both are checked against the sha256 digests in ``manifest.json``
before anything is built. ``make model`` rebuilds them from the shared data
with :func:`write_release` (see ``benchmarks/release_model.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from facecheck.card import ModelCard
from facecheck.checkpoint import build_from_card, load_weights, read_checkpoint
from facecheck.errors import CheckpointError
from facecheck.files import file_sha256
from facecheck.models import FaceClassifier

RELEASE_DIR = Path(__file__).resolve().parents[1] / "release"
MANIFEST = "manifest.json"
DEFAULT_MODEL = "facecheck-general-v2"


@dataclass(frozen=True)
class Release:
    name: str
    weights: Path
    card: Path
    weights_sha256: str
    card_sha256: str


def releases(folder: Path = RELEASE_DIR) -> dict[str, Release]:
    """The shipped models listed in the manifest (empty when none ships)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return {}
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    return {
        name: Release(name, folder / e["weights"], folder / e["card"], e["weights_sha256"], e["card_sha256"])
        for name, e in entries.items()
    }


def release(name: str = DEFAULT_MODEL, folder: Path = RELEASE_DIR) -> Release:
    found = releases(folder)
    if name not in found:
        shipped = ", ".join(found) or "none"
        raise CheckpointError(f"no shipped model {name!r} (shipped: {shipped}); give --model RUN_FOLDER")
    return found[name]


def shipped_name(path: str | Path | None) -> str | None:
    """The shipped model that ``path`` names: None -> the default one; a bare name of a shipped model (that is
    not also a file or folder here) -> that name; anything else -> None (a path to load)."""
    if path is None:
        return DEFAULT_MODEL
    text = str(path)
    if "/" in text or "\\" in text or Path(text).expanduser().exists():
        return None
    return text if text in releases() else None


def read_release_card(entry: Release) -> ModelCard:
    if not entry.card.is_file() or file_sha256(entry.card) != entry.card_sha256:
        raise CheckpointError(f"{entry.card}: missing or changed (sha256 differs from the manifest)")
    return ModelCard.from_dict(json.loads(entry.card.read_text(encoding="utf-8")), str(entry.card))


def load_release(name: str = DEFAULT_MODEL, folder: Path = RELEASE_DIR) -> tuple[FaceClassifier, ModelCard]:
    """The shipped model in eval mode (float32) and its card, after checking both files' digests."""
    from safetensors.torch import load_file

    entry = release(name, folder)
    card = read_release_card(entry)
    if not entry.weights.is_file() or file_sha256(entry.weights) != entry.weights_sha256:
        raise CheckpointError(f"{entry.weights}: missing or changed (sha256 differs from the manifest)")
    model = build_from_card(card, str(entry.weights))
    return load_weights(model, load_file(str(entry.weights)), str(entry.weights)), card


def write_release(
    checkpoint: str | Path, name: str, folder: Path = RELEASE_DIR, scope: dict[str, Any] | None = None
) -> Release:
    """Store a trained checkpoint as a shipped model: float16 weights, the card with ``scope``, the manifest."""
    from safetensors.torch import save_file

    payload = read_checkpoint(checkpoint)
    card: ModelCard = payload["card"]
    if scope is not None:
        card = card.with_values(scope=scope)
    # A released card names its training sources by folder name only: the build machine's paths are private.
    data = card.training.data
    public = replace(data, data_dir=card.trained_on, split_file=None)
    card = card.with_values(training=replace(card.training, data=public))
    folder.mkdir(parents=True, exist_ok=True)
    weights, card_file = folder / f"{name}.safetensors", folder / f"{name}.card.json"
    # Float16 halves the file (the difference it makes to p_fake is measured and recorded by `make model`).
    # Cloned: a model can register one module twice (its Grad-CAM layer), and safetensors stores every
    # tensor on its own.
    tensors = {
        k: (v.half() if v.is_floating_point() else v).clone(memory_format=torch.contiguous_format)
        for k, v in payload["state_dict"].items()
    }
    save_file(tensors, str(weights))
    card_file.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest[name] = {
        "weights": weights.name,
        "card": card_file.name,
        "weights_sha256": file_sha256(weights),
        "card_sha256": file_sha256(card_file),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return release(name, folder)


def float16_copy_agrees(model: FaceClassifier, reference: torch.nn.Module, batch: torch.Tensor) -> float:
    """Largest difference of p_fake between the shipped (float16-stored) and the original weights."""
    with torch.inference_mode():
        shipped = torch.softmax(model(batch), 1)[:, 1]
        original = torch.softmax(reference(batch), 1)[:, 1]
    return float((shipped - original).abs().max())
