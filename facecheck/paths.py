"""Where facecheck keeps generated files: a user cache folder, never beside the data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$FACECHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/facecheck``, else ``~/.cache/facecheck``."""
    explicit = os.environ.get("FACECHECK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facecheck"
