"""facecheck: tell real face photographs from fake ones."""

__version__ = "0.1.0"


def load(path: str, device: str = "auto"):
    """Load a trained detector from a run folder or checkpoint file; see :class:`facecheck.api.Detector`."""
    from facecheck.api import load as _load

    return _load(path, device=device)


__all__ = ["__version__", "load"]
