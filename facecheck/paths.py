"""Where facecheck keeps generated files: a user cache folder, never beside the data.

Everything in it can be made again, so ``facecheck cache clean`` may remove any of it; it removes only the
folders named in :data:`CACHE_KINDS`, never anything else that happens to live there.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# Sub-folder -> what it holds (each is made again when next needed).
CACHE_KINDS = {
    "decoded": "decoded and resized training images (memory-mapped), reused by every run on the same files",
    "features": "backbone features of --freeze-backbone runs",
    "onnx": "ONNX exports made for --backend onnx/openvino",
    "faces": "face detections (MTCNN), by image content",
    "synthetic": "the built-in synthetic data set",
}


def cache_dir() -> Path:
    """``$FACECHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/facecheck``, else ``~/.cache/facecheck``."""
    explicit = os.environ.get("FACECHECK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facecheck"


@dataclass
class CacheUsage:
    kind: str
    path: Path
    files: int
    bytes: int

    @property
    def description(self) -> str:
        return CACHE_KINDS[self.kind]

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": str(self.path), "files": self.files, "bytes": self.bytes}


def cache_usage() -> list[CacheUsage]:
    """Files and bytes in each kind of cache (0 where the folder does not exist)."""
    usage = []
    for kind in CACHE_KINDS:
        folder = cache_dir() / kind
        files = size = 0
        if folder.is_dir() and not folder.is_symlink():
            for root, _dirs, names in os.walk(folder):  # symlinked folders are not followed
                for name in names:
                    path = Path(root) / name
                    if path.is_file() and not path.is_symlink():
                        files += 1
                        size += path.stat().st_size
        usage.append(CacheUsage(kind, folder, files, size))
    return usage


def clean_cache(kinds: list[str] | None = None) -> list[CacheUsage]:
    """Remove the named kinds of cache (default: all of them); returns what was there before."""
    chosen = kinds or list(CACHE_KINDS)
    unknown = sorted(set(chosen) - set(CACHE_KINDS))
    if unknown:
        from facecheck.errors import ConfigError

        raise ConfigError(f"unknown cache kind(s) {', '.join(unknown)}; known: {', '.join(CACHE_KINDS)}")
    removed = []
    for entry in cache_usage():
        if entry.kind not in chosen:
            continue
        if entry.path.is_symlink():
            entry.path.unlink()  # the link only, never what it points to
        elif entry.path.is_dir():
            shutil.rmtree(entry.path)
        removed.append(entry)
    return removed


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
