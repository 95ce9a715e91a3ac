"""One way to read a model's card, whatever holds it: a run folder or ``.pt`` checkpoint, an exported
``.onnx`` file, or the name of a model shipped with facecheck (None: the default one).

Nothing is built and no weights are loaded: reading a card is cheap, and every file is read without running
code (``torch.load(weights_only=True)``, ONNX protobuf, the shipped JSON checked against its sha256).
"""

from __future__ import annotations

from pathlib import Path

from facecheck.card import ModelCard
from facecheck.checkpoint import read_card as read_checkpoint_card
from facecheck.inference.export import read_onnx_card
from facecheck.inference.release import read_release_card, release, shipped_name


def load_card(model: str | Path | None = None) -> ModelCard:
    """The card of ``model``: a run folder, a ``.pt`` or ``.onnx`` file, a shipped model's name, or None."""
    name = shipped_name(model)
    if name is not None:
        return read_release_card(release(name))
    if Path(model).suffix == ".onnx":  # type: ignore[arg-type]
        return read_onnx_card(Path(model).expanduser())  # type: ignore[arg-type]
    return read_checkpoint_card(model)  # type: ignore[arg-type]
