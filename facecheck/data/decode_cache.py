"""Decode once: a memory-mapped uint8 array of resized images, reused by every epoch and run.

Decoding and resizing JPEGs every epoch costs little at 256 px but several
times more for 600-1024 px images. The cache holds each image exactly as the
evaluation pipeline's Resize step leaves it (PIL bilinear), so tensors built
from it match the uncached pipeline; random augmentations then run on the
uint8 tensors (torchvision transforms v2).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from facecheck.config import PreprocessConfig
from facecheck.data.discovery import ImageRecord
from facecheck.data.images import load_image
from facecheck.data.transforms import source_and_resize, source_signature
from facecheck.files import disk_full, disk_full_error, process_alive
from facecheck.paths import cache_folder

# 2: images are turned upright by their EXIF orientation before decoding (older entries are not).
CACHE_VERSION = 2


def cache_key(records: list[ImageRecord], preprocess: PreprocessConfig) -> str:
    """Changes whenever a file, its content date or size, the order or the source/size settings change."""
    digest = hashlib.sha256(f"decode-v{CACHE_VERSION}-{source_signature(preprocess)}".encode())
    for record in records:
        stat = record.path.stat()
        # surrogateescape: a file name that is not UTF-8 hashes as its own bytes
        digest.update(f"{record.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()[:32]


def _decode(record: ImageRecord, prepare: Callable[[Image.Image], Image.Image], min_size: int) -> np.ndarray:
    return np.asarray(prepare(load_image(record.path, min_size)), dtype=np.uint8)


def decoded_images(
    records: list[ImageRecord],
    preprocess: PreprocessConfig,
    min_size: int = 1,
    progress: bool = True,
    root: Path | None = None,
) -> np.ndarray:
    """A read-only ``(N, size, size, 3)`` uint8 array of ``records`` after the source steps and Resize."""
    folder = cache_folder("decoded", root)
    image_size = preprocess.image_size
    prepare = source_and_resize(preprocess)
    key = cache_key(records, preprocess)
    path = folder / f"{key}.u8"
    shape = (len(records), image_size, image_size, 3)
    if not path.is_file() or path.stat().st_size != int(np.prod(shape)):
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(folder, key)
        handle, temporary = tempfile.mkstemp(prefix=f".{key}.{_builder()}.", dir=folder)
        try:
            # Reserved up front: a memory-mapped write past a full disk is a SIGBUS (the process dies without a
            # word, and its half file stays), a failed reservation is a clear error.
            try:
                os.posix_fallocate(handle, 0, int(np.prod(shape)))
            except OSError as exc:
                if disk_full(exc, folder):
                    raise disk_full_error(
                        path, int(np.prod(shape)),
                        "free some space, point $FACECHECK_CACHE_DIR at a larger disk, or train with "
                        "--set data.decode_cache=false",
                    ) from None  # fmt: skip
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            finally:
                os.close(handle)
            array = np.memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
            with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
                decoded = pool.map(lambda r: _decode(r, prepare, min_size), records)
                for index, pixels in enumerate(
                    tqdm(
                        decoded, total=len(records), desc="decode cache", unit="img", disable=not progress, leave=False
                    )
                ):
                    array[index] = pixels
            array.flush()
            del array
            # Renamed only when complete: an interrupted build never looks like a cache.
            os.replace(temporary, path)
            (folder / f"{key}.json").write_text(json.dumps({"n": len(records), "image_size": image_size}))
        finally:
            Path(temporary).unlink(missing_ok=True)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape)


def _builder() -> str:
    """Who builds a cache entry, in its temporary file's name: ``host-pid`` (the cache may be shared)."""
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def _remove_stale_builds(folder: Path, key: str) -> None:
    """Temporary files of builds on this host whose process is gone (killed mid-build): they only hold space."""
    host = socket.gethostname().replace(".", "_")
    for stale in folder.glob(f".{key}.{host}-*"):
        pid = stale.name.removeprefix(f".{key}.{host}-").split(".", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            stale.unlink(missing_ok=True)


class CachedImageDataset(Dataset):
    """Yields ``(transform(uint8 CHW tensor), label)`` from a decoded-image array."""

    def __init__(self, pixels: np.ndarray, labels: list[int], transform: torch.nn.Module) -> None:
        if len(pixels) != len(labels):
            raise ValueError("pixels and labels differ in length")
        self.pixels = pixels
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.pixels[index])).permute(2, 0, 1)
        return self.transform(image), self.labels[index]
