"""WebDataset tar shards: a split data set written once, streamed by every process and loader worker.

``facecheck data shard DIR --out SHARDS --shard-size N`` writes
``SHARDS/{train,val,test}-NNNNNN.tar`` (each sample: the image file's own bytes
under its extension, ``cls`` the label, ``json`` with path, label, group,
source and split) and ``SHARDS/shards.json``, the manifest listing every shard
with its sample and class counts. Training samples are shuffled (seeded)
before they are written, so that each shard mixes classes and sources.

``train --data 'SHARDS/train-{000000..000099}.tar'`` streams the training
shards named by the pattern (brace notation; the validation and test shards
come from the manifest beside them). Every process reads its own shards
(``webdataset.split_by_node``) and every loader worker its own part of those
(``split_by_worker``); see :class:`ShardStream`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import tarfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from facecheck.data.discovery import CLASS_NAMES, ImageRecord
from facecheck.data.images import read_image
from facecheck.data.splits import PATH_ERRORS, SPLITS
from facecheck.errors import DataError
from facecheck.extras import require

MANIFEST = "shards.json"
# Every sample's original path, label, split and shard, so that a run's split.csv needs no pass over the shards.
INDEX = "index.csv"
MANIFEST_VERSION = 1
IMAGE_FIELDS = ("jpg", "png", "webp", "bmp")


def _field(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return {"jpeg": "jpg"}.get(suffix, suffix if suffix in IMAGE_FIELDS else "img")


def write_shards(
    split: dict[str, list[ImageRecord]],
    root: Path,
    out_dir: Path,
    shard_size: int,
    *,
    groups: dict[Path, str] | None = None,
    sources: dict[Path, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write one shard series per split and the manifest; returns the manifest."""
    wds = require("webdataset", "distributed")
    if shard_size < 1:
        raise DataError("--shard-size must be at least 1")
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST).exists():
        raise DataError(f"{out_dir} already holds shards ({MANIFEST}); choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(root).resolve()
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "root": str(root), "shard_size": shard_size,
                                "seed": seed, "splits": {}}  # fmt: skip
    index_rows: list[list[str]] = []
    for name in SPLITS:
        records = list(split.get(name, []))
        if not records:
            continue
        if name == "train":  # mixed once here; streaming then shuffles shards and a sample buffer
            random.Random(seed).shuffle(records)
        shards: list[dict[str, Any]] = []
        with wds.ShardWriter(str(out_dir / f"{name}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for index, record in enumerate(records):
                if index % shard_size == 0:
                    shards.append({"file": f"{name}-{len(shards):06d}.tar", "count": 0, "classes": [0, 0]})
                resolved = record.path.resolve()
                shown = resolved.relative_to(root) if resolved.is_relative_to(root) else resolved
                meta = {
                    "path": shown.as_posix(),
                    "label": CLASS_NAMES[record.label],
                    # An image outside every duplicate or identity group is a group of its own.
                    "group": str((groups or {}).get(record.path) or f"file:{shown.as_posix()}"),
                    "source": (sources or {}).get(record.path, root.name),
                    "split": name,
                }
                sink.write({"__key__": f"{index:08d}", _field(record.path): record.path.read_bytes(),
                            "cls": str(record.label).encode(), "json": json.dumps(meta).encode()})  # fmt: skip
                shards[-1]["count"] += 1
                shards[-1]["classes"][record.label] += 1
                index_rows.append([meta["path"], meta["label"], name, shards[-1]["file"]])
        manifest["splits"][name] = {"count": len(records), "shards": shards}
    with open(out_dir / INDEX, "w", newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "split", "shard"])
        writer.writerows(index_rows)
    # The manifest last: a folder with shards.json is complete.
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def is_shard_spec(data_dirs: list[str]) -> bool:
    """Whether a run's data are shards: one ``.tar`` path or pattern, or a folder with a shard manifest."""
    if len(data_dirs) != 1:
        return False
    spec = data_dirs[0]
    return spec.endswith(".tar") or (Path(spec).expanduser() / MANIFEST).is_file()


def shard_root(spec: str) -> Path:
    """The folder the shards' images were read from (their split files are relative to it)."""
    path = Path(spec).expanduser()
    folder = path if (path / MANIFEST).is_file() else path.parent
    try:
        return Path(json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["root"])
    except (OSError, ValueError, KeyError):
        raise DataError(f"no readable {MANIFEST} beside {spec}") from None


@dataclass
class ShardSet:
    """The shards a run uses: its training shards (the pattern's) and the manifest's validation and test shards."""

    folder: Path
    manifest: dict[str, Any]
    train: list[str]

    @classmethod
    def open(cls, spec: str) -> ShardSet:
        from braceexpand import braceexpand

        path = Path(spec).expanduser()
        folder = path if (path / MANIFEST).is_file() else path.parent
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"no {MANIFEST} beside {spec}: shards for training are written by `facecheck data shard`")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        known = {s["file"] for s in manifest["splits"].get("train", {}).get("shards", [])}
        if path == folder:
            train = sorted(known)
        else:
            train = [Path(name).name for name in braceexpand(path.name)]
            unknown = [name for name in train if name not in known]
            if unknown:
                raise DataError(f"{unknown[0]} is not a training shard of {manifest_path}")
        missing = [name for name in train if not (folder / name).is_file()]
        if missing:
            raise DataError(f"shard not found: {folder / missing[0]}")
        if not train:
            raise DataError(f"{spec} names no training shards")
        return cls(folder, manifest, train)

    def shards(self, split: str) -> list[dict[str, Any]]:
        listed = self.manifest["splits"].get(split, {}).get("shards", [])
        return [s for s in listed if split != "train" or s["file"] in self.train]

    def urls(self, split: str) -> list[str]:
        return [str(self.folder / s["file"]) for s in self.shards(split)]

    def count(self, split: str) -> int:
        return sum(s["count"] for s in self.shards(split))

    def records(self) -> dict[str, list[ImageRecord]]:
        """The split as records of the original files (the run's split.csv and class counts): the shard
        index's rows, training rows only from the shards in use."""
        root = Path(self.manifest["root"])
        chosen = set(self.train)
        split: dict[str, list[ImageRecord]] = {name: [] for name in SPLITS}
        with open(self.folder / INDEX, newline="", encoding="utf-8", errors=PATH_ERRORS) as handle:
            for row in csv.DictReader(handle):
                if row["split"] != "train" or row["shard"] in chosen:
                    split[row["split"]].append(ImageRecord(root / row["path"], CLASS_NAMES.index(row["label"])))
        return split


# A member larger than this is skipped unread (an image file of facecheck's never comes near it): a tar member
# is held in memory whole while its sample is decoded.
MAX_MEMBER_BYTES = 64 * 1024 * 1024
_MEMBER_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # "dir/key.ext" as webdataset splits it


def _warn(message: str) -> None:
    warnings.warn(message, ShardWarning, stacklevel=3)


class ShardWarning(UserWarning):
    """A shard sample or member that was skipped: the run goes on without it."""


def tar_samples(source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A webdataset pipeline stage: the samples of each ``{"url": ...}`` shard, read member by member.

    Unlike ``webdataset.tarfile_to_samples``, a member's size is checked before it is read (past
    :data:`MAX_MEMBER_BYTES` it is skipped unread), and a truncated or corrupt shard ends that shard with a
    warning naming it, never the run.
    """
    for item in source:
        url = item["url"]
        sample: dict[str, Any] = {}
        try:
            with open(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    match = _MEMBER_NAME.match(member.name)
                    if not member.isfile() or match is None:
                        continue
                    key, field = match.groups()
                    if sample and sample["__key__"] != key:
                        yield sample
                        sample = {}
                    if not sample:
                        sample = {"__key__": key, "__url__": url}
                    if member.size > MAX_MEMBER_BYTES:
                        _warn(f"{url}#{key}: member {member.name} of {member.size:,} bytes skipped unread")
                        sample["__skipped__"] = True
                        continue
                    handle = tar.extractfile(member)
                    sample[field.lower()] = handle.read() if handle is not None else b""
                # tarfile takes a header cut short for the end of the archive: a whole tar ends in zero blocks.
                if os.pread(stream.fileno(), 512, tar.offset) != bytes(512):
                    raise tarfile.ReadError("it ends without the end-of-archive blocks")
        except (tarfile.TarError, EOFError, OSError) as exc:
            _warn(f"{url}: shard is truncated or corrupt ({exc}); its remaining samples skipped")
            sample = {}  # the sample being read may be cut short
        if sample:
            yield sample


def decode_sample(sample: dict[str, Any], min_size: int) -> tuple[Any, int]:
    """``(PIL image, label)`` of a raw sample, read under the same rules as a file (see read_image).

    A sample that cannot be used (no image, a label other than 0 or 1, an unreadable image) is a
    :class:`DataError` naming the shard and the sample's key.
    """
    field = next((f for f in (*IMAGE_FIELDS, "img") if f in sample), None)
    where = f"{sample.get('__url__', '?')}#{sample.get('__key__', '?')}"
    if field is None:
        raise DataError(f"{where}: no image in this shard sample")
    label = sample.get("cls", b"").strip()
    if label not in (b"0", b"1"):
        raise DataError(f"{where}: label {label[:20]!r} is not 0 (real) or 1 (fake)")
    image = read_image(io.BytesIO(sample[field]), min_size, name=where)
    return image, int(label)


class ShardStream(IterableDataset):
    """Transformed ``(tensor, label)`` samples streamed from shards.

    Training (``per_process`` set): each epoch the shard list is shuffled (the same order in every
    process, seeded by seed and epoch), ``webdataset.split_by_node`` gives each process its shards and
    ``split_by_worker`` each loader worker its part, a seeded buffer shuffles samples, and every process
    yields exactly ``per_process`` samples (its shards again from the start if they run short), so all
    processes take the same number of steps. Evaluation (``per_process`` None): each sample once, in order.
    Samples whose transform finds no face under ``no_face: skip`` are left out.
    """

    def __init__(self, urls: list[str], transform: Callable, min_size: int = 1, *, per_process: int | None = None,
                 seed: int = 0, buffer: int = 1000) -> None:  # fmt: skip
        self.urls, self.transform, self.min_size = list(urls), transform, min_size
        self.per_process, self.seed, self.buffer = per_process, seed, buffer
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def for_rank(self, rank: int, world: int) -> ShardStream:
        """The evaluation stream of process ``rank``'s shards (validation in shards)."""
        return ShardStream(self.urls[rank::world], self.transform, self.min_size)

    def _samples(self, round_: int) -> Iterator[tuple[torch.Tensor, int]]:
        from facecheck.data.faces import NoFaceError

        wds = require("webdataset", "distributed")
        urls = list(self.urls)
        if not urls:  # a process with no validation shard of its own (fewer shards than processes)
            return
        stages: list[Any] = [wds.SimpleShardList(urls)]
        if self.per_process is not None:
            # The same order in every process and round: each process keeps its own shards all epoch.
            random.Random(self.seed * 7_919 + self.epoch * 104_729).shuffle(urls)
            rank, _world, worker, _workers = wds.utils.pytorch_worker_info()
            stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker, tar_samples,
                      wds.shuffle(self.buffer, initial=min(100, self.buffer),
                                  rng=random.Random(hash((self.seed, self.epoch, round_, rank, worker))))]  # fmt: skip
        else:
            stages.append(tar_samples)
        for sample in wds.DataPipeline(*stages):
            try:
                image, label = decode_sample(sample, self.min_size)
            except DataError as exc:  # one bad sample is left out (with a warning), never the end of a run
                _warn(f"skipped {exc}")
                continue
            try:
                yield self.transform(image), label
            except NoFaceError:
                continue

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        if self.per_process is None:
            yield from self._samples(0)
            return
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        quota = self.per_process // workers + (worker < self.per_process % workers)
        produced, round_ = 0, 0
        while produced < quota:
            before = produced
            for item in self._samples(round_):
                yield item
                produced += 1
                if produced == quota:
                    return
            if produced == before:
                raise DataError("a training process got no samples from its shards")
            round_ += 1
