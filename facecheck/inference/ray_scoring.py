"""Batch scoring on Ray: ``facecheck predict --engine ray INPUTS --out scores.parquet``.

The inputs are cut into partitions of ``partition_size`` files, in order. Ray
Data reads the list of partitions and a pool of actors scores them
(``map_batches`` with a callable class, one ONNX Runtime session per actor,
the model's own preprocessing through :class:`~facecheck.inference.predictor.Detector`,
so every score is the one ``facecheck predict --backend onnx`` gives). Each
partition is written by the actor that scored it as one Parquet file with a
deterministic name (``part-00007-<digest>.parquet``, renamed into place when
complete) inside the ``--out`` folder, which is therefore a Parquet data set
with columns ``path, p_fake, label, faces, decided_by, error`` (faces as in
``predict``'s JSON). A rerun skips the partitions whose file exists, so an
interrupted job continues where it stopped.

On one machine a local Ray is started (``ray.init(num_cpus=...)``); with
``address`` the job joins a running cluster, whose nodes need facecheck
installed and ``--out`` on storage they all see. A run folder or checkpoint is
exported to ONNX once (the facecheck cache); the actors get the ONNX bytes and
the model card through Ray, not a path of the driver's disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecheck.cpu import available_cores
from facecheck.errors import DataError, FacecheckError
from facecheck.extras import require

PARTITION_SIZE = 256
# The job a folder of partitions belongs to; "_" keeps it out of the Parquet data set.
MANIFEST = "_facecheck_job.json"
COLUMNS = ("path", "p_fake", "label", "faces", "decided_by", "error")


@dataclass(frozen=True)
class ScoringJob:
    """What every actor needs: the model (ONNX bytes and card) and how to run it."""

    onnx: bytes
    card: dict[str, Any]
    tta: str | None
    face_check: bool | None
    batch_size: int

    @property
    def digest(self) -> str:
        digest = hashlib.sha256(self.onnx)
        digest.update(json.dumps([self.card, self.tta, self.face_check], sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Partition:
    index: int
    file: str
    paths: list[tuple[str, str]]  # (as given, absolute)


def scoring_job(model: str | Path | None, tta: str | None, face_check: bool | None, batch_size: int) -> ScoringJob:
    """The ONNX model (exported once into the cache unless it is one already) and its card."""
    from facecheck.inference.predictor import Detector

    detector = Detector.load(model, device="cpu", backend="onnx")
    path = getattr(detector.engine, "path", None)
    if path is None:
        raise FacecheckError("--engine ray needs an ONNX model file or a model facecheck can export to ONNX")
    return ScoringJob(Path(path).read_bytes(), detector.card.to_dict(), tta, face_check, batch_size)


def _shown(path: Path) -> str:
    """The path as text Parquet can hold (a file name that is not UTF-8 keeps its bytes as escapes)."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def plan_partitions(paths: list[Path], partition_size: int, job_digest: str) -> list[Partition]:
    """Consecutive runs of ``partition_size`` inputs, each named after its index, the model and its files."""
    if partition_size < 1:
        raise DataError("--partition-size must be at least 1")
    partitions = []
    for index, start in enumerate(range(0, len(paths), partition_size)):
        chunk = [(_shown(p), str(p.expanduser().absolute())) for p in paths[start : start + partition_size]]
        digest = hashlib.sha256(json.dumps([job_digest, chunk]).encode()).hexdigest()[:12]
        partitions.append(Partition(index, f"part-{index:05d}-{digest}.parquet", chunk))
    return partitions


class PartitionScorer:
    """Ray Data's callable class: built once per actor (one ONNX Runtime session), called with partitions."""

    def __init__(self, job: ScoringJob, out_dir: str, threads: int) -> None:
        import torch

        from facecheck.card import ModelCard
        from facecheck.inference.engines import OnnxEngine
        from facecheck.inference.predictor import Detector

        torch.set_num_threads(threads)  # the transforms' own tensor work stays within the actor's CPUs
        card = ModelCard.from_dict(job.card, "batch-scoring job")
        engine = OnnxEngine(job.onnx, threads=threads)
        self.detector = Detector(None, card, "cpu", engine, job.tta, job.face_check)
        self.batch_size = job.batch_size
        self.out_dir = Path(out_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts, failures = [], []
        for name, listed in zip(batch["file"], batch["paths"], strict=True):
            pairs = json.loads(str(listed))
            paths = [absolute for _shown_path, absolute in pairs]
            results = self.detector.predict(paths, self.batch_size, provenance=False)  # the rows hold scores only
            rows = {
                "path": [shown for shown, _absolute in pairs],
                "p_fake": [r.p_fake for r in results],
                "label": [r.label for r in results],
                "faces": [None if r.faces is None else [asdict(face) for face in r.faces] for r in results],
                "decided_by": [r.decided_by for r in results],
                "error": [None if r.error is None else r.error.replace(absolute, shown, 1)
                          for r, (shown, absolute) in zip(results, pairs, strict=True)],
            }  # fmt: skip
            write_partition(self.out_dir / str(name), rows)
            counts.append(len(results))
            failures.append(sum(r.error is not None for r in results))
        return {"file": batch["file"], "n": np.asarray(counts), "errors": np.asarray(failures)}


def write_partition(path: Path, rows: dict[str, list]) -> None:
    """One partition's Parquet file, written beside and renamed: a file that exists is complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # faces: as predict's JSON (per face: box, detector confidence, p_fake, label), for a model that judges faces.
    face = pa.struct([("box", pa.list_(pa.int64())), ("confidence", pa.float64()), ("p_fake", pa.float64()),
                      ("label", pa.string())])  # fmt: skip
    schema = pa.schema([("path", pa.string()), ("p_fake", pa.float64()), ("label", pa.string()),
                        ("faces", pa.list_(face)), ("decided_by", pa.int64()), ("error", pa.string())])  # fmt: skip
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pydict(rows, schema=schema), temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_scores(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every row of a finished job, in input order (partitions by index)."""
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for part in sorted(Path(out_dir).glob("part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


# Run beside the driver: when the driver's end of the pipe closes without a word (it was killed), the local Ray
# processes it started (gcs_server, raylet, ...) are killed too, checked by start time so a reused pid is spared.
_REAPER = """
import os, signal, sys
said = sys.stdin.buffer.read()
if not said:
    for entry in sys.argv[1:]:
        pid, started = entry.split(":")
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[19] == started:
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, IndexError):
            pass
"""
_reaper: Any = None


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat field 22): with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux, from /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc/self/stat").exists() else []:
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def reap_when_gone(pids: list[int]) -> None:
    """Kill ``pids`` if this process dies without calling :func:`release_reaper` (SIGKILL included; Linux)."""
    import subprocess
    import sys

    global _reaper
    entries = [f"{pid}:{started}" for pid in pids if (started := _start_time(pid)) is not None]
    if not entries:
        return
    _reaper = subprocess.Popen(
        [sys.executable, "-c", _REAPER, *entries], stdin=subprocess.PIPE, start_new_session=True
    )  # its own session: a Ctrl-C or kill of the driver's process group does not stop it first


def release_reaper() -> None:
    """The driver shut Ray down itself: the reaper leaves the processes alone (they are gone, their pids free)."""
    global _reaper
    if _reaper is not None:
        try:
            _reaper.stdin.write(b"done")
            _reaper.stdin.close()
        except OSError:
            pass
        _reaper.wait(timeout=10)
        _reaper = None


def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start a local Ray with ``num_cpus``; False when Ray already runs here."""
    import signal

    ray = require("ray", "distributed")
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local job reports nothing anywhere
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    # ray.init installs its own SIGTERM handler, which aborts the driver (exit 134); ours says "interrupted"
    # after shutting Ray down in an orderly way.
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    if address:
        ray.init(address=address, **quiet)
    else:
        before = set(descendants(os.getpid()))
        cores = available_cores()
        ray.init(num_cpus=num_cpus or cores, include_dashboard=False, **quiet)
        reap_when_gone([pid for pid in descendants(os.getpid()) if pid not in before])
    for number, handler in handlers.items():
        if handler is not None:
            signal.signal(number, handler)
    return True


def check_scores_folder(out_dir: Path) -> None:
    """Before any work: ``--out`` is a folder of facecheck's scores, or new, or empty; never the user's files."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FacecheckError(f"--out {out_dir} is not a folder: --engine ray writes a folder of Parquet files")
    if out_dir.is_dir() and not (out_dir / MANIFEST).is_file():
        others = sorted(entry.name for entry in out_dir.iterdir())
        if others:
            raise FacecheckError(
                f"--out {out_dir} already holds other files ({others[0]}{', ...' if len(others) > 1 else ''}): "
                "--engine ray writes a folder of its own; use a new --out"
            )


def _check_manifest(out_dir: Path, job: ScoringJob, partitions: list[Partition]) -> None:
    """A folder holds the partitions of one job: rerunning the same job continues it, another is refused."""
    manifest = {"model": job.digest, "partitions": [p.file for p in partitions]}
    path = out_dir / MANIFEST
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            saved = None
        if saved != manifest:
            raise FacecheckError(
                f"{out_dir} holds scores of another model or other inputs; use a new --out (or delete it)"
            )
        return
    if any(out_dir.glob("*.parquet")):
        raise FacecheckError(f"{out_dir} already holds Parquet files that facecheck did not write; use a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def score_with_ray(
    model: str | Path | None,
    paths: list[Path],
    out_dir: str | Path,
    *,
    address: str | None = None,
    actors: int = 2,
    num_cpus: int | None = None,
    partition_size: int = PARTITION_SIZE,
    batch_size: int = 32,
    tta: str | None = None,
    face_check: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``paths`` into the Parquet folder ``out_dir`` on Ray; returns counts of the job."""
    require("ray", "distributed")
    require("pyarrow", "distributed")
    if actors < 1:
        raise DataError("--ray-actors must be at least 1")
    if not paths:
        raise DataError("nothing to score")
    out = Path(out_dir)
    check_scores_folder(out)  # before the model is loaded or exported
    job = scoring_job(model, tta, face_check, batch_size)
    partitions = plan_partitions(paths, partition_size, job.digest)
    _check_manifest(out, job, partitions)
    pending = [p for p in partitions if not (out / p.file).is_file()]
    if pending:
        started = start_ray(address, num_cpus)
        try:
            _run(pending, job, out, actors, progress)
        finally:
            if started:
                import ray

                ray.shutdown()
                release_reaper()
    rows = read_scores(out)
    return {
        "out": str(out),
        "partitions": len(partitions),
        "scored_partitions": len(pending),
        "skipped_partitions": len(partitions) - len(pending),
        "images": len(rows),
        "errors": sum(row["error"] is not None for row in rows),
    }


def _run(pending: list[Partition], job: ScoringJob, out: Path, actors: int, progress: bool) -> None:
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    # The actors share the CPUs Ray has (this machine's, or the cluster's): K actors use as many threads as one.
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // actors)
    items = [{"file": p.file, "paths": json.dumps(p.paths)} for p in pending]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    scored = dataset.map_batches(
        PartitionScorer,
        fn_constructor_kwargs={"job": job, "out_dir": str(out.absolute()), "threads": threads},
        batch_size=1,  # one partition a call: a partition is the unit of work and of restart
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )
    done = scored.take_all()
    missing = {p.file for p in pending} - {str(row["file"]) for row in done}
    if missing:
        raise FacecheckError(f"{len(missing)} partition(s) were not scored; rerun the same command to finish them")
