"""The datasets of one run, built from its split: decoded once when the decode cache is on.

With pseudo-fakes configured, the training set is the run's images plus, each
epoch, ``pseudo_fake_ratio`` fakes per real image made from the training reals
(see :mod:`facecheck.data.pseudo_fakes`), deterministic in (seed, epoch, index)
so that a resumed run sees the same ones. With ``balance: source-class`` the
sampler weighs every (source, class) pair the same, pseudo-fakes counted as a
class of their source.

With several processes, the decode cache and the backbone features are built
once (rank 0) and read by the others (:meth:`DistContext.build_once`).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2

from facecheck.config import TrainConfig
from facecheck.data.dataset import ImageDataset
from facecheck.data.decode_cache import CachedImageDataset, decoded_images
from facecheck.data.discovery import FAKE, REAL, ImageRecord
from facecheck.data.shards import ShardSet, ShardStream
from facecheck.data.sources import GENERATOR, manifest_metadata, source_of
from facecheck.data.transforms import eval_tensor_transform, eval_transform, train_tensor_transform, train_transform
from facecheck.errors import FacecheckError
from facecheck.models import FaceClassifier
from facecheck.training.distributed import DistContext
from facecheck.training.features import cached_features, extract_features, features_key
from facecheck.training.runners import FeatureRunner


class PseudoFakeDataset(Dataset):
    """Fakes made from real images: ``count`` per epoch, the i-th from real ``i % len(reals)``."""

    def __init__(self, reals: np.ndarray, count: int, kinds: list[str], seed: int, jpeg_quality: int | None,
                 transform: torch.nn.Module) -> None:  # fmt: skip
        from facecheck.data.pseudo_fakes import PseudoFakeMaker

        self.reals, self.count, self.transform = reals, count, transform
        self.maker = PseudoFakeMaker(kinds, seed)
        # Pseudo-fakes get the same compression as every input (JPEG normalisation), so that the
        # absence of its traces never tells them apart.
        self.jpeg_quality = jpeg_quality
        self.epoch = 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        real = torch.from_numpy(np.array(self.reals[index % len(self.reals)])).permute(2, 0, 1)
        fake = self.maker(real, epoch=self.epoch, index=index)
        if self.jpeg_quality:
            fake = v2.functional.jpeg(fake, self.jpeg_quality)
        return self.transform(fake), FAKE


class RunDatasets:
    def __init__(
        self,
        config: TrainConfig,
        split: dict[str, list[ImageRecord]],
        monitor_name: str,
        progress: bool,
        data_dirs: list[str] | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.dist = dist or DistContext()
        self.config = config
        self.split = split
        self.monitor_name = monitor_name
        self.progress = progress
        self.data_dirs = data_dirs or []
        self.pseudo: PseudoFakeDataset | None = None
        # The training images: the data's own fakes only when configured.
        self.train_records = [r for r in split["train"] if config.data.use_fakes or r.label == REAL]

    def _dataset(self, name: str, training: bool) -> Dataset:
        """Training images augmented, or evaluation images as one view: per-epoch monitoring and
        cached features skip test-time augmentation (it is applied when the run is calibrated and tested)."""
        records = self.split[name]
        pre, data = self.config.preprocess, self.config.data
        if data.decode_cache:
            pixels = self._decoded(records)
            transform = train_tensor_transform(pre) if training else eval_tensor_transform(pre, tta="none")
            return CachedImageDataset(pixels, [r.label for r in records], transform)
        transform = train_transform(pre) if training else eval_transform(pre, tta="none")
        return ImageDataset(records, transform, data.min_image_size)

    def train(self) -> Dataset:
        data, pre = self.config.data, self.config.preprocess
        records = self.train_records
        if data.decode_cache:
            pixels = self._decoded(records)
            transform = train_tensor_transform(pre)
            own = CachedImageDataset(pixels, [r.label for r in records], transform)
        else:
            own = ImageDataset(records, train_transform(pre), data.min_image_size)
        if not data.pseudo_fakes:
            return own
        if not data.decode_cache:
            raise FacecheckError("pseudo-fakes are made from decoded images: they need data.decode_cache=true")
        real_index = [i for i, r in enumerate(records) if r.label == REAL]
        count = round(data.pseudo_fake_ratio * len(real_index))
        self.pseudo = PseudoFakeDataset(
            np.asarray(pixels)[real_index], count, list(data.pseudo_fakes), self.config.seed, pre.normalize_jpeg,
            train_tensor_transform(pre),
        )  # fmt: skip
        self.pseudo_sources = [self._source(records[i]) for i in real_index]
        return ConcatDataset([own, self.pseudo])

    def _decoded(self, records: list[ImageRecord]) -> np.ndarray:
        """The decode cache of ``records``, built by one process and memory-mapped by all."""
        pre, data = self.config.preprocess, self.config.data
        return self.dist.build_once(lambda: decoded_images(records, pre, data.min_image_size, self.progress))

    def set_epoch(self, epoch: int) -> None:
        if self.pseudo is not None:
            self.pseudo.epoch = epoch

    def _source(self, record: ImageRecord) -> str:
        return source_of(record.path, self.data_dirs)

    def sampler_weights(self) -> torch.Tensor | None:
        """Per training item, the weight that makes every (source, class) pair equally likely; None: uniform.

        ``source-class-generator``: inside a pair, each generator (or real photo collection) named by the
        manifest weighs in proportion to the square root of its image count, so that a small generator is
        seen far more often than its share, without repeating its few images as often as a large one's.
        """
        balance = self.config.data.balance
        if balance == "none":
            return None
        keys = [(self._source(r), r.label) for r in self.train_records]
        generators = [""] * len(keys)
        if balance == "source-class-generator":
            metadata = manifest_metadata(self.data_dirs)
            generators = [metadata.get(r.path.resolve(), {}).get(GENERATOR, "") for r in self.train_records]
        if self.pseudo is not None:
            keys += [(self.pseudo_sources[i % len(self.pseudo_sources)], "pseudo") for i in range(len(self.pseudo))]
            generators += [""] * len(self.pseudo)
        counts = Counter(zip(keys, generators, strict=True))
        # Each pair's generators share its weight 1 in proportion to sqrt(count); each image its generator's share.
        roots: dict[tuple, float] = {}
        for (key, _), count in counts.items():
            roots[key] = roots.get(key, 0.0) + count**0.5
        weights = [
            (counts[(key, generator)] ** 0.5 / roots[key]) / counts[(key, generator)]
            for key, generator in zip(keys, generators, strict=True)
        ]
        return torch.tensor(weights, dtype=torch.float64)

    def monitor(self) -> Dataset:
        return self._dataset(self.monitor_name, training=False)

    def inference(self, name: str) -> Dataset:
        """Split ``name`` through the inference pipeline (PIL, test-time views): calibration and the test."""
        pre = self.config.preprocess
        return ImageDataset(self.split[name], eval_transform(pre), self.config.data.min_image_size)

    def feature_runner(
        self,
        model: FaceClassifier,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        dist: DistContext | None = None,
    ) -> FeatureRunner:
        """Backbone features of the train (plain and, with flips, mirrored) and monitor images.

        With several processes rank 0 extracts them (every image) into the feature cache and the others
        load that file: the work is done once and every process trains on the same features.
        """
        config = self.config
        dist = dist or self.dist

        def features(name: str, mirrored: bool) -> torch.Tensor:
            records = self.split[name]
            key = features_key(model, config.model.name, records, config.preprocess, mirrored, amp_dtype)
            # Alone, the images are decoded only when the features are missing. With several processes the
            # dataset (its decode cache is itself built once) is made first, outside build_once: one
            # collective may not run inside another.
            shared = self._dataset(name, training=False) if dist.enabled else None
            return dist.build_once(
                lambda: cached_features(
                    key,
                    lambda: extract_features(
                        model,
                        shared if shared is not None else self._dataset(name, training=False),
                        device=device,
                        batch_size=config.eval_batch_size,
                        mirrored=mirrored,
                        amp_dtype=amp_dtype,
                        channels_last=config.compute.channels_last,
                        progress=self.progress,
                        desc=f"features {name}{' mirrored' if mirrored else ''}",
                    ),
                )
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
            dist,
        )


class ShardDatasets:
    """The datasets of a run trained on WebDataset shards: streams, with the same transforms as image folders.

    Shards are streamed, not decoded into the decode cache: images go through the PIL pipeline of
    ``data.decode_cache: false`` (same augmentations, JPEG normalisation and face crops; detections are
    cached by pixel content as for files). Each process yields ``ceil(train count / processes)`` samples
    an epoch, so the processes take the same number of steps.
    """

    def __init__(
        self, config: TrainConfig, shards: ShardSet, monitor_name: str, dist: DistContext | None = None
    ) -> None:
        self.config, self.shards, self.monitor_name = config, shards, monitor_name
        self.dist = dist or DistContext()
        readers = self.dist.world_size * max(1, config.data.num_workers)
        if len(shards.train) < readers:
            raise FacecheckError(
                f"{len(shards.train)} training shard(s) for {self.dist.world_size} process(es) x "
                f"{max(1, config.data.num_workers)} loader worker(s): every reader needs a shard of its own; "
                "write smaller shards (data shard --shard-size) or use fewer processes or workers"
            )
        self.stream: ShardStream | None = None

    def train(self) -> Dataset:
        data, pre = self.config.data, self.config.preprocess
        per_process = -(-self.shards.count("train") // self.dist.world_size)
        self.stream = ShardStream(self.shards.urls("train"), train_transform(pre), data.min_image_size,
                                  per_process=per_process, seed=self.config.seed)  # fmt: skip
        return self.stream

    def monitor(self) -> Dataset:
        pre = self.config.preprocess
        return ShardStream(self.shards.urls(self.monitor_name), eval_transform(pre, tta="none"),
                           self.config.data.min_image_size)  # fmt: skip

    def inference(self, name: str) -> Dataset:
        return ShardStream(self.shards.urls(name), eval_transform(self.config.preprocess),
                           self.config.data.min_image_size)  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        if self.stream is not None:
            self.stream.set_epoch(epoch)

    def sampler_weights(self) -> None:
        return None

    def feature_runner(self, *args: object, **kwargs: object) -> FeatureRunner:
        raise FacecheckError("--freeze-backbone needs an image folder, not shards")
