"""facecheck: tell real face photographs from fake ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from facecheck.inference.predictor import Detector

from facecheck.version import __version__


def load(
    path: str | Path | None = None,
    device: str = "auto",
    backend: str = "auto",
    tta: str | None = None,
    precision: str = "auto",
) -> Detector:
    """Load a detector: a run folder, checkpoint or ``.onnx`` file, or with no ``path`` the shipped model.

    The same as :func:`facecheck.api.load`, with the same parameters (a test holds them equal).
    """
    # Imported here so that `import facecheck` stays light (no torch until needed).
    from facecheck.api import load as _load

    return _load(path, device=device, backend=backend, tta=tta, precision=precision)


__all__ = ["__version__", "load"]
