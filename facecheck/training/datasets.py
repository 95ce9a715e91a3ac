"""The datasets of one run, built from its split: decoded once when the decode cache is on."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from facecheck.config import TrainConfig
from facecheck.data.dataset import ImageDataset
from facecheck.data.decode_cache import CachedImageDataset, decoded_images
from facecheck.data.discovery import ImageRecord
from facecheck.data.presets import eval_tensor_transform, eval_transform, train_tensor_transform, train_transform
from facecheck.models import FaceClassifier
from facecheck.training.features import cached_features, extract_features, features_key
from facecheck.training.runners import FeatureRunner


class RunDatasets:
    def __init__(
        self, config: TrainConfig, split: dict[str, list[ImageRecord]], monitor_name: str, progress: bool
    ) -> None:
        self.config = config
        self.split = split
        self.monitor_name = monitor_name
        self.progress = progress

    def _dataset(self, name: str, training: bool) -> Dataset:
        """Training images augmented, or evaluation images as one view: per-epoch monitoring and
        cached features skip test-time augmentation (it is applied when the run is calibrated and tested)."""
        records = self.split[name]
        pre, data = self.config.preprocess, self.config.data
        if data.decode_cache:
            pixels = decoded_images(records, pre, data.min_image_size, self.progress)
            transform = train_tensor_transform(pre) if training else eval_tensor_transform(pre, tta="none")
            return CachedImageDataset(pixels, [r.label for r in records], transform)
        transform = train_transform(pre) if training else eval_transform(pre, tta="none")
        return ImageDataset(records, transform, data.min_image_size)

    def train(self) -> Dataset:
        return self._dataset("train", training=True)

    def monitor(self) -> Dataset:
        return self._dataset(self.monitor_name, training=False)

    def feature_runner(
        self, model: FaceClassifier, device: torch.device, amp_dtype: torch.dtype | None
    ) -> FeatureRunner:
        """Backbone features of the train (plain and, with flips, mirrored) and monitor images."""
        config = self.config

        def features(name: str, mirrored: bool) -> torch.Tensor:
            records = self.split[name]
            key = features_key(model, config.model.name, records, config.preprocess, mirrored, amp_dtype)
            return cached_features(
                key,
                lambda: extract_features(
                    model,
                    self._dataset(name, training=False),
                    device=device,
                    batch_size=config.eval_batch_size,
                    mirrored=mirrored,
                    amp_dtype=amp_dtype,
                    channels_last=config.compute.channels_last,
                    progress=self.progress,
                    desc=f"features {name}{' mirrored' if mirrored else ''}",
                ),
            )

        views = [features("train", False)]
        if config.preprocess.hflip_prob > 0:
            views.append(features("train", True))
        return FeatureRunner(
            views,
            torch.tensor([r.label for r in self.split["train"]]),
            features(self.monitor_name, False),
            torch.tensor([r.label for r in self.split[self.monitor_name]]),
            config,
            device,
        )
