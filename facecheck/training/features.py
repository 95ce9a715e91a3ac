"""Backbone features computed once and cached, for frozen-backbone training.

With the backbone frozen, every epoch would push the same images through the
same network; computing the features once turns 15 epochs of fine-tuning
into seconds of head training. The cache key covers the backbone weights,
the preprocessing, the exact files and the view (plain or mirrored), so a
stale feature file is never reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from facecheck.compute import autocast, to_memory_format
from facecheck.config import PreprocessConfig
from facecheck.data.decode_cache import cache_key as records_key
from facecheck.data.discovery import ImageRecord
from facecheck.models import FaceClassifier
from facecheck.paths import cache_folder

FEATURES_VERSION = 1


def backbone_fingerprint(model: FaceClassifier) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def features_key(
    model: FaceClassifier,
    model_name: str,
    records: list[ImageRecord],
    preprocess: PreprocessConfig,
    mirrored: bool,
    amp_dtype: torch.dtype | None,
) -> str:
    parts = {
        "version": FEATURES_VERSION,
        "model": model_name,
        "backbone": backbone_fingerprint(model),
        "input_filter": type(model.input_filter).__name__,
        "files": records_key(records, preprocess),
        "preprocess": [
            preprocess.image_size,
            preprocess.resize,
            preprocess.crop_size,
            list(preprocess.mean),
            list(preprocess.std),
        ],
        "mirrored": mirrored,
        "precision": str(amp_dtype),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@torch.inference_mode()
def extract_features(
    model: FaceClassifier,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    mirrored: bool = False,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "features",
) -> torch.Tensor:
    """``(N, feature_dim)`` float32 features of ``dataset`` (evaluation transforms, no randomness)."""
    model.eval()
    chunks = []
    loader = DataLoader(dataset, batch_size=batch_size)
    for images, _labels in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        if mirrored:
            images = torch.flip(images, dims=[-1])
        images = to_memory_format(images.to(device), channels_last)
        with autocast(device, amp_dtype):
            chunks.append(model.features(images).float().cpu())
    return torch.cat(chunks)


def cached_features(key: str, compute: callable, root: Path | None = None) -> torch.Tensor:
    """Load features stored under ``key`` or compute and store them (atomically)."""
    folder = cache_folder("features", root)
    path = folder / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            path.unlink(missing_ok=True)
    features = compute()
    temporary = path.with_suffix(".tmp")
    torch.save(features, temporary)
    temporary.replace(path)
    return features
