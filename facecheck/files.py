"""Files: written atomically (a reader, or a crash, never sees half a file) and identified by content."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def creation_mode() -> int:
    """The permissions a plainly created file gets under the user's umask (0644 under the usual 022).

    ``mkstemp`` makes files 0600 whatever the umask; results renamed from one would be readable by the owner only.
    """
    try:  # Linux 4.7+: read without changing it (os.umask would, briefly, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_output_file(path: str | Path, inputs: list[Path] | tuple[Path, ...] = ()) -> Path:
    """Refuse, before any work, an output file that cannot be written or that is one of ``inputs``.

    Its folder must be writable (or be creatable: missing folders are made when it is written); it must not
    be a folder, a link or one of the input files.
    """
    from facecheck.errors import FacecheckError

    path = Path(path)
    if path.is_symlink():
        raise FacecheckError(f"--out {path} is a symbolic link: name the file itself")
    if path.is_dir():
        raise FacecheckError(f"--out {path} is a folder: name a file in it")
    existing = Path(os.path.abspath(path)).parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FacecheckError(f"--out {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FacecheckError(f"--out {path}: the folder {existing} is not writable")
    if path.exists() and any(path.samefile(item) for item in inputs if Path(item).exists()):
        raise FacecheckError(f"--out {path} is one of the inputs: name another file")
    return path


def create_new_file(folder: Path, name: Path, suffix: str | None = None) -> tuple[Path, IO[bytes]]:
    """A new file at ``folder / name`` opened for writing, never an existing file or a link's target.

    Where the name is taken (by any file, or a link), ``<stem>-2<suffix>``, ``-3`` ... is used instead
    (``suffix``: the name's ending, default its last suffix); a sub-folder of ``name`` that is a link, or
    leads outside ``folder``, is refused.
    """
    from facecheck.errors import FacecheckError

    base = folder.resolve()
    target = folder / name
    parent = target.parent
    current = folder
    for part in name.parent.parts:
        current = current / part
        if current.is_symlink():
            raise FacecheckError(f"{current} is a symbolic link: not writing through it")
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(base):
        raise FacecheckError(f"{parent} leads outside the output folder {folder}")
    suffix = name.suffix if suffix is None or not name.name.endswith(suffix) else suffix
    stem = name.name[: len(name.name) - len(suffix)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for number in range(1, 10_000):
        candidate = parent / (f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}")
        try:
            handle = os.open(candidate, flags, 0o666)  # O_EXCL: never an existing file, nor through a link
        except FileExistsError:
            continue
        return candidate, os.fdopen(handle, "wb")
    raise FacecheckError(f"{parent}: too many files named {stem}-N{suffix}")


@contextmanager
def interruptions_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt as they would have.

    A KeyboardInterrupt raised inside ``torch.save``'s C++ writer surfaces as a RuntimeError ("unexpected
    pos ...") instead of an interruption; a checkpoint write is short, so it is finished first.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    received: list[int] = []
    numbers = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in numbers}
    for number in numbers:
        signal.signal(number, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A stream to a temporary file beside ``path``; on success it is fsynced and renamed over ``path``.

    On any error (or interruption) the temporary file is removed and ``path`` is left as it was. Text
    mode writes UTF-8, and file names that are not UTF-8 (kept as surrogates) as their own bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(handle, creation_mode())  # as any new file of the user's, not mkstemp's 0600
    text = {} if "b" in mode else {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
    try:
        with os.fdopen(handle, mode, **text) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if disk_full(exc, path.parent):
            raise disk_full_error(path) from exc
        raise


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether ``exc`` is a write that failed for want of space: ENOSPC, or a library's own error (torch's zip
    writer says only "file write failed") while the device has (almost) nothing left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, RuntimeError) and "write" in str(exc).lower():
        try:
            stat = os.statvfs(folder)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < 64 * 1024 * 1024
    return False


def disk_full_error(path: Path, needed: int | None = None, fix: str | None = None) -> Exception:
    """A :class:`~facecheck.errors.DiskFullError` naming ``path`` and what to do."""
    from facecheck.errors import DiskFullError

    wanted = f" ({needed / 1e6:.0f} MB needed)" if needed else ""
    fix = fix or "free some space and run again (a file it would have replaced is kept as it was)"
    return DiskFullError(f"no space left on the device for {path}{wanted}: {fix}")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as stream:
        stream.write(text)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's content (hex), read in blocks: checkpoints and weights can be large."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a lock's or a temporary file's owner)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
