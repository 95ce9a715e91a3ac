"""Where facecheck keeps generated files: a user cache folder, never beside the data.

Everything in it can be made again, so ``facecheck cache clean`` may remove any of it; it removes only the
folders named in :data:`CACHE_KINDS` that hold facecheck's marker file (written when facecheck made the folder),
never a link, an unmarked folder or anything else that happens to live there.
"""

from __future__ import annotations

import os
import shutil
import threading
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


# Written into each cache folder facecheck makes: the proof that `cache clean` may remove it.
MARKER = ".facecheck-cache"


def cache_dir() -> Path:
    """``$FACECHECK_CACHE_DIR``, else ``$XDG_CACHE_HOME/facecheck``, else ``~/.cache/facecheck``."""
    explicit = os.environ.get("FACECHECK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facecheck"


def cache_folder(kind: str, root: Path | None = None) -> Path:
    """``<cache>/<kind>``, made (with its marker) when missing; a folder facecheck did not make is refused.

    Refusing keeps a user's own ``faces/`` (say, with ``FACECHECK_CACHE_DIR=.``) from being mixed with, and later
    cleaned as, cache files.
    """
    from facecheck.errors import ConfigError

    folder = (root or cache_dir()) / kind
    refusal = (
        f"{folder} exists but facecheck did not make it (no {MARKER} file): point $FACECHECK_CACHE_DIR at a "
        "folder of its own (or, if it is a cache from an older facecheck, remove it)"
    )
    if folder.is_symlink() or (folder.exists() and not (folder / MARKER).is_file()):
        raise ConfigError(refusal)
    if not folder.exists():
        # Made under another name with its marker, then renamed: another thread or process never sees the
        # folder without its marker (which it would refuse as not facecheck's).
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(f".{kind}.{os.getpid()}.{threading.get_ident()}.tmp")
        staging.mkdir(exist_ok=True)
        (staging / MARKER).write_text(f"facecheck cache: {kind}\n")
        try:
            staging.rename(folder)
        except OSError:  # made meanwhile by another thread or process: theirs is kept
            shutil.rmtree(staging, ignore_errors=True)
            if not owned(folder):
                raise ConfigError(refusal) from None
    return folder


def owned(folder: Path) -> bool:
    """Whether facecheck made ``folder`` (a real folder, not a link, holding the marker file)."""
    return folder.is_dir() and not folder.is_symlink() and (folder / MARKER).is_file()


def check_cache_outside(data_dir: Path) -> None:
    """Refuse a cache folder inside (or equal to) a data folder: cleaning it could remove the user's images."""
    from facecheck.errors import DataError

    cache, data = cache_dir().resolve(), Path(data_dir).resolve()
    if cache == data or cache.is_relative_to(data):
        raise DataError(
            f"the cache folder {cache} lies inside the data folder {data}: "
            "set $FACECHECK_CACHE_DIR to a folder outside the data"
        )


@dataclass
class CacheUsage:
    kind: str
    path: Path
    files: int
    bytes: int
    owned: bool = True

    @property
    def description(self) -> str:
        return CACHE_KINDS[self.kind]

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind, "path": str(self.path), "files": self.files, "bytes": self.bytes, "owned": self.owned
        }  # fmt: skip


def cache_usage() -> list[CacheUsage]:
    """Files and bytes in each kind of cache (0 where the folder does not exist or facecheck did not make it)."""
    usage = []
    for kind in CACHE_KINDS:
        folder = cache_dir() / kind
        files = size = 0
        mine = owned(folder)
        if mine:
            for root, _dirs, names in os.walk(folder):  # symlinked folders are not followed
                for name in names:
                    path = Path(root) / name
                    if path.is_file() and not path.is_symlink():
                        files += 1
                        size += path.stat().st_size
        usage.append(CacheUsage(kind, folder, files, size, mine or not (folder.exists() or folder.is_symlink())))
    return usage


def clean_cache(kinds: list[str] | None = None) -> list[CacheUsage]:
    """Remove the named kinds of cache (default: all of them); returns what was there before.

    Only folders facecheck made are removed; a link or an unmarked folder of that name is left as it is and
    returned with ``owned=False``.
    """
    chosen = kinds or list(CACHE_KINDS)
    unknown = sorted(set(chosen) - set(CACHE_KINDS))
    if unknown:
        from facecheck.errors import ConfigError

        raise ConfigError(f"unknown cache kind(s) {', '.join(unknown)}; known: {', '.join(CACHE_KINDS)}")
    removed = []
    for entry in cache_usage():
        if entry.kind not in chosen:
            continue
        if not entry.owned:
            removed.append(entry)  # a link or a folder facecheck did not make: never followed, never removed
            continue
        if owned(entry.path):
            # Moved aside first, so an interrupted clean never leaves a half folder without its marker under the
            # kind's name; rmtree does not follow links inside it.
            doomed = entry.path.with_name(f".{entry.kind}.removing-{os.getpid()}")
            entry.path.rename(doomed)
            shutil.rmtree(doomed)
        removed.append(entry)
    return removed


def human_size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
