"""facecheck: tell real face photographs from fake ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facecheck.inference.predictor import Detector

__version__ = "0.1.0"


def load(path: str, device: str = "auto", backend: str = "torch") -> Detector:
    """Load a trained detector from a run folder or checkpoint file; see :class:`facecheck.api.Detector`."""
    # Imported here so that `import facecheck` stays light (no torch until needed).
    from facecheck.api import load as _load

    return _load(path, device=device, backend=backend)


__all__ = ["__version__", "load"]
