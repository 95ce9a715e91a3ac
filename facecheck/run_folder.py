"""The run folder: the files of one training run, and the rules for starting and resuming it.

Training, evaluation, the CLI and the Python API all go through
:class:`RunFolder`, so file names and resume rules live in one place:

- a new run needs a folder that holds no run yet (no ``config.yaml``);
- a run can be resumed once its data are prepared (``config.yaml`` and
  ``split.csv`` written): from ``last.pt`` when an epoch has completed, from
  epoch 1 otherwise (a crash during the first epoch loses nothing else);
- a resumed run keeps its data, split, preprocessing and model; only the
  number of epochs and the compute settings may change, and the saved config
  is rewritten only for those;
- a finished run that kept only ``best.pt`` (``train --keep best``) cannot be
  resumed or extended: ``last.pt`` held the optimiser state;
- a run folder has one writer at a time: training holds an advisory lock
  (``flock`` on ``.facecheck.lock``, which names its pid and host); a second
  writer is refused, and the kernel frees the lock of a process that dies.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

import yaml

from facecheck.config import TrainConfig, load_config_file, merge
from facecheck.data.discovery import ImageRecord
from facecheck.data.splits import read_split
from facecheck.errors import FacecheckError
from facecheck.files import atomic_write_text, process_alive

# Sections a resumed run may change: neither the data nor the model change with them.
RESUMABLE_CHANGES = ("epochs", "compute", "eval_batch_size", "device", "unfreeze_epochs")


class RunExistsError(FacecheckError):
    """A new run was asked for in a folder that already holds one; the words suit the Python API, and the CLI
    says the same with its own options (``--resume``, ``--out``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already holds a run; continue it with resume=True or train into another folder")
        self.path = path


class RunLock:
    """The one-writer lock of a run folder, held until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path, handle: int, made_folder: bool) -> None:
        self.path, self.handle, self.made_folder = path, handle, made_folder

    def release(self) -> None:
        if self.handle < 0:
            return
        folder = self.path.parent
        if self.made_folder and [entry.name for entry in folder.iterdir()] == [self.path.name]:
            # A run that failed before writing anything leaves no folder behind (as before the lock existed);
            # removed while still locked, and a writer that opened the old file sees it is gone and retries.
            self.path.unlink(missing_ok=True)
            folder.rmdir()
        os.close(self.handle)  # frees the flock
        self.handle = -1


def _file_stat(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def changed_files(records: list[ImageRecord], recorded: dict[Path, tuple[int, int]]) -> list[tuple[str, str]]:
    """``(path, reason)`` of each record whose file is gone or differs from when the run began."""
    changed = []
    for record in records:
        now = _file_stat(record.path)
        if now is None:
            changed.append((str(record.path), "removed since the run began"))
        elif record.path in recorded and now != recorded[record.path]:
            changed.append((str(record.path), "changed since the run began (size or modification time)"))
    return changed


class RunFolder:
    LOCK = ".facecheck.lock"
    CONFIG = "config.yaml"
    SPLIT = "split.csv"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    SKIPPED = "skipped.csv"
    # Size and modification time of each split image (in split.csv's order) when the run began: a file that
    # changes or goes away later is left out, never silently trained or tested on.
    FILES = "files.json"
    LOG = "train.log"
    INSPECT = "inspect.json"
    BEST = "best.pt"
    LAST = "last.pt"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- what is there ------------------------------------------------------------------------
    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    def holds_run(self) -> bool:
        return (self.path / self.CONFIG).is_file() or self.best.exists() or self.last.exists()

    def has_prepared_data(self) -> bool:
        return (self.path / self.CONFIG).is_file() and (self.path / self.SPLIT).is_file()

    def load_config(self) -> TrainConfig:
        path = self.path / self.CONFIG
        if not path.is_file():
            raise FacecheckError(f"{self.path} is not a run folder (no {self.CONFIG})")
        return TrainConfig.from_dict(load_config_file(path))

    def read_split(self, data_root: Path) -> dict[str, list[ImageRecord]]:
        return read_split(self.path / self.SPLIT, data_root)

    # ---- one writer -----------------------------------------------------------------------------
    def lock(self) -> RunLock:
        """Take the folder's writer lock (making the folder), or refuse with who holds it.

        ``flock`` is released by the kernel when its holder dies, so a lock file left by a killed run is stale
        by construction: it is taken over, never in the way.
        """
        made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / self.LOCK
        handle = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not path.exists() or os.stat(path).st_ino != os.fstat(handle).st_ino:
                os.close(handle)  # its holder removed it on the way out: lock the folder afresh
                return self.lock()
        except BlockingIOError:
            holder = os.pread(handle, 200, 0).decode(errors="replace").split()
            os.close(handle)
            pid, host = [*holder, "?", "?"][:2]
            gone = host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))
            hint = (
                f" (pid {pid} is gone: the file system kept its lock; remove {path} if no run uses the folder)"
                if gone
                else "; wait for it to finish or choose another --out"
            )
            raise FacecheckError(f"{self.path} is in use by another training run (pid {pid} on {host}){hint}") from None
        except OSError as exc:
            os.close(handle)
            raise FacecheckError(f"cannot lock {path}: {exc.strerror}") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        return RunLock(path, handle, made)

    # ---- starting and resuming ----------------------------------------------------------------
    def check_new(self) -> None:
        if self.holds_run():
            raise RunExistsError(self.path)

    def resume_config(self, requested: TrainConfig | None) -> TrainConfig:
        """The config to continue with: the saved one, with only epochs and compute settings taken from
        ``requested``. Anything else that differs is an error, never a silent rewrite."""
        if not self.has_prepared_data():
            raise FacecheckError(
                f"nothing to resume in {self.path}: no prepared run ({self.CONFIG} and {self.SPLIT}); start it anew"
            )
        summary = self.read_json(self.SUMMARY) or {}
        if not self.last.is_file() and self.LAST not in summary.get("kept", [self.LAST]):
            raise FacecheckError(
                f"{self.path} finished keeping only its best checkpoint (keep='best', --keep best), which removed "
                f"{self.LAST}, so it cannot be resumed or extended; train a new run"
            )
        saved = self.load_config()
        if requested is None:
            return saved
        wanted, kept = requested.to_dict(), saved.to_dict()
        differing = sorted(k for k in kept if k not in RESUMABLE_CHANGES and kept[k] != wanted.get(k))
        if differing:
            raise FacecheckError(
                f"a resumed run keeps its settings; these differ from {self.path / self.CONFIG}: "
                f"{', '.join(differing)} (only {', '.join(RESUMABLE_CHANGES)} may change)"
            )
        return merge(saved, {k: wanted[k] for k in RESUMABLE_CHANGES})

    def save_config(self, config: TrainConfig) -> None:
        self._write_text(self.CONFIG, yaml.safe_dump(config.to_dict(), sort_keys=False))

    def remove_temporary_files(self) -> list[Path]:
        """Half-written files (checkpoints, config, split, metrics) of a process killed during a write: every
        writer in a run folder writes ``.NAME.*.tmp`` and renames it (atomic_torch_save, atomic_write_text)."""
        stale = sorted(self.path.glob(".*.tmp")) if self.path.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    # ---- the data as the run began -------------------------------------------------------------
    def record_files(self, split: dict[str, list[ImageRecord]]) -> None:
        stats = {
            name: [list(_file_stat(record.path) or (-1, -1)) for record in records] for name, records in split.items()
        }
        self.write_json(self.FILES, stats)

    def recorded_files(self, split: dict[str, list[ImageRecord]]) -> dict[Path, tuple[int, int]]:
        """Each split image's recorded ``(size, mtime_ns)``; empty for runs made before it was recorded."""
        stats = self.read_json(self.FILES) or {}
        recorded: dict[Path, tuple[int, int]] = {}
        for name, records in split.items():
            values = stats.get(name) or []
            if len(values) == len(records):
                recorded.update((record.path, tuple(value)) for record, value in zip(records, values, strict=True))
        return recorded

    def add_skipped(self, rows: list[tuple[str, str]]) -> None:
        path = self.path / self.SKIPPED
        with open(path, "a", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            if handle.tell() == 0:
                writer.writerow(["path", "reason"])
            writer.writerows(rows)

    # ---- per-epoch history --------------------------------------------------------------------
    def history(self, keep_through: int) -> list[dict[str, Any]]:
        """Rows of earlier epochs; rows past ``keep_through`` (an epoch cut short) are dropped."""
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                if number == len(lines):
                    break  # a last line torn by a crash mid-write: its epoch is redone
                raise FacecheckError(f"{path}: line {number} is not a metrics row; remove it to resume") from None
        rows = [row for row in rows if isinstance(row, dict) and row.get("epoch", 0) <= keep_through]
        self._write_text(self.METRICS, "".join(json.dumps(row) + "\n" for row in rows))
        return rows

    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.path / self.METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def write_json(self, name: str, value: Any) -> None:
        self._write_text(name, json.dumps(value, indent=2) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.path / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def _write_text(self, name: str, text: str) -> None:
        # Written beside and renamed (as a ".*.tmp" file, which a resume removes), so a crash never leaves
        # half a file.
        atomic_write_text(self.path / name, text)
