"""A torch Dataset over image records, and the up-front readability scan."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from facecheck.data.discovery import ImageRecord
from facecheck.data.images import load_image
from facecheck.errors import DataError


class ImageDataset(Dataset):
    """Decodes each record's image and applies ``transform``; yields ``(tensor, label)``."""

    def __init__(self, records: list[ImageRecord], transform: Callable, min_size: int = 1) -> None:
        self.records = list(records)
        self.transform = transform
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        record = self.records[index]
        try:
            image = load_image(record.path, self.min_size)
        except DataError as exc:  # it was readable when the run began (scan_readable): it changed since
            reason = str(exc).removeprefix(f"{record.path}: ")
            raise DataError(
                f"{record.path} changed during the run ({reason}): resume with `facecheck train --out RUN --resume`, "
                "which leaves out files changed since the run began"
            ) from None
        return self.transform(image), record.label


def scan_readable(
    records: list[ImageRecord], min_size: int, progress: bool = True
) -> tuple[list[ImageRecord], list[tuple[str, str]]]:
    """Decode every image once; return the usable records and ``(path, reason)`` for the rest.

    Done before training so that a truncated file found in epoch 7 cannot end a run.
    """
    good: list[ImageRecord] = []
    bad: list[tuple[str, str]] = []
    for record in tqdm(records, desc="checking images", unit="img", disable=not progress, leave=False):
        try:
            load_image(record.path, min_size)
        except DataError as exc:
            bad.append((str(record.path), str(exc).removeprefix(f"{record.path}: ")))
        else:
            good.append(record)
    return good, bad
