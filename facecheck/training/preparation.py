"""A run's data, prepared before any training: discovered, checked, inspected and split (or a shard set's
index), then written into the run folder. The trainer, ``facecheck data shard`` and the benchmarks share it."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from facecheck.config import TrainConfig
from facecheck.data.dataset import scan_readable
from facecheck.data.discovery import ImageRecord, count_by_class, limit_per_class
from facecheck.data.inspect import inspect_records, merge_groups, summary_lines
from facecheck.data.layouts import Dataset, describe
from facecheck.data.shards import ShardSet, is_shard_spec
from facecheck.data.sources import (
    GENERATOR,
    SOURCE,
    open_sources,
    resolve_data_dirs,
    sources_of,
    split_by_source,
)
from facecheck.data.splits import make_split, read_split, write_split
from facecheck.data.transforms import size_warning
from facecheck.errors import DataError
from facecheck.run_folder import RunFolder

# Where a step says what it did (the run's log, or print).
Log = Callable[[str], None]


@dataclass
class PreparedData:
    root: Path
    split: dict[str, list[ImageRecord]]
    unreadable: list[tuple[str, str]]
    inspection: dict[str, Any] | None = None
    # Per image: its duplicate/identity group and its source (written into shards).
    groups: dict[Path, str] | None = None
    sources: dict[Path, str] | None = None
    # Image files (not shard members): their sizes and dates are recorded, to notice a change during the run.
    files: bool = True

    def write(self, run: RunFolder) -> None:
        write_split(self.split, run / RunFolder.SPLIT, self.root)
        if self.files:
            run.record_files(self.split)
        if self.inspection is not None:
            run.write_json(
                RunFolder.INSPECT, {k: v for k, v in self.inspection.items() if k not in ("facts", "groups")}
            )
        if self.unreadable:
            with open(run / RunFolder.SKIPPED, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["path", "reason"])
                writer.writerows(self.unreadable)


def prepare_data(config: TrainConfig, log: Log, progress: bool) -> PreparedData:
    """Discover, check and split the images (nothing is written yet)."""
    data_dirs = resolve_data_dirs(config, log)
    dataset = open_sources(data_dirs)
    data_dir = dataset.root
    records = dataset.records
    counts = count_by_class(records)
    log(f"found {len(records)} images in {data_dir}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    log(describe(dataset))
    multi_source = len(data_dirs) > 1
    if config.data.exclude_generators:
        excluded = set(config.data.exclude_generators)
        named = {dataset.metadata.get(r.path, {}).get(GENERATOR) for r in records}
        missing = sorted(excluded - named)
        if missing:
            raise DataError(f"no image's manifest names the generator(s) {', '.join(missing)} (exclude_generators)")
        before = len(records)
        records = [r for r in records if dataset.metadata.get(r.path, {}).get(GENERATOR) not in excluded]
        log(f"left out {before - len(records)} image(s) of {', '.join(sorted(excluded))} (exclude_generators)")
    if config.data.max_per_class is not None:
        if multi_source:  # the cap applies per source, so that no source is crowded out
            sources = sources_of(records, dataset.metadata)
            records = [
                r for name in sorted(set(sources))
                for r in limit_per_class([r for r, s in zip(records, sources, strict=True) if s == name],
                                         config.data.max_per_class)
            ]  # fmt: skip
        else:
            records = limit_per_class(records, config.data.max_per_class)
        log(f"using at most {config.data.max_per_class} per class: {count_by_class(records)}")
    records, bad = scan_readable(records, config.data.min_image_size, progress=progress)
    if bad:
        log(f"WARNING: skipped {len(bad)} unusable image(s) (all listed in the run's {RunFolder.SKIPPED}):")
        for path, reason in bad[:5]:
            log(f"  {path}: {reason}")
    pre = config.preprocess
    if pre.face_crop and pre.no_face in ("skip", "fail"):
        records = _drop_faceless(records, config, log, progress)
    inspection, groups = None, dataset.group_ids(records)
    if config.data.inspect:
        inspection = inspect_records(records, dataset.root, progress)
        groups = merge_groups(groups, inspection["groups"])
        for line in summary_lines(inspection):
            log(f"data: {line}")
        # e.g. 600 px photos under the default preset (resize none): only their centre is learnt from and judged
        sizes = [(f["width"], f["height"]) for f in inspection["facts"] if f.get("width") and f.get("height")]
        sized = size_warning(pre, sizes) if pre.image_size is not None else None
        if sized:
            log(f"data: WARNING: {sized}")
    data = config.data
    if data.split_file:
        split = _split_from_file(config, data_dir, records)
        log(f"split taken from {data.split_file}")
    elif dataset.split is not None:
        split = _own_split(dataset, records, groups, data.val_fraction, data.split_seed)
        log(f"using the data set's own split ({dataset.layout})")
    elif multi_source:
        sources = sources_of(records, dataset.metadata)
        split = split_by_source(records, sources, groups, data.test_fraction, data.val_fraction, data.split_seed)
        log(f"split made inside each {SOURCE}: " + ", ".join(sorted(set(sources))))
    else:
        split = make_split(records, data.test_fraction, data.val_fraction, data.split_seed, groups)
    log("split: " + ", ".join(f"{name} {len(part)} {count_by_class(part)}" for name, part in split.items() if part))
    group_of = {r.path: str(g) for r, g in zip(records, groups, strict=True)} if groups else None
    source_of_record = dict(zip((r.path for r in records), sources_of(records, dataset.metadata), strict=True))
    return PreparedData(dataset.root, split, bad, inspection, group_of, source_of_record)


def open_shards(config: TrainConfig) -> ShardSet | None:
    """The run's WebDataset shards when its data are shards (``--data 'SHARDS/train-{...}.tar'``), else None."""
    if not is_shard_spec(config.data.data_dirs):
        return None
    data, pre = config.data, config.preprocess
    unsupported = [
        (bool(data.pseudo_fakes), "pseudo-fakes (they are made from the decode cache)"),
        (config.target_fpr_scope == "collection", "a threshold per real collection (it reads the sources' manifests)"),
        (data.balance != "none", "balanced sampling (it weighs every image; a stream has no index)"),
        (config.freeze_backbone, "--freeze-backbone (its feature cache is keyed by image files)"),
        (bool(data.split_file), "--split-file (shards carry their split)"),
        (pre.face_crop and pre.no_face == "fail", "--no-face fail (streams leave faceless images out: use skip)"),
    ]
    for used, what in unsupported:
        if used:
            raise DataError(f"training on shards does not support {what}; train on the image folder instead")
    return ShardSet.open(config.data.data_dirs[0])


def prepare_shards(shards: ShardSet, log: Log) -> PreparedData:
    """A shard set's split (its index), for the run folder's split.csv and the log."""
    split = shards.records()
    log(f"streaming WebDataset shards from {shards.folder}: {len(shards.train)} training shard(s), "
        f"{len(shards.urls('val'))} validation, {len(shards.urls('test'))} test")  # fmt: skip
    log("split (from the shards): " + ", ".join(
        f"{name} {len(part)} {count_by_class(part)}" for name, part in split.items() if part))  # fmt: skip
    return PreparedData(Path(shards.manifest["root"]), split, [], files=False)


def _own_split(
    dataset: Dataset, records: list[ImageRecord], groups: list | None, val_fraction: float, seed: int
) -> dict[str, list[ImageRecord]]:
    """The set's predefined parts, limited to usable images; validation carved from train if it has none."""
    usable = set(records)
    split = {name: [r for r in part if r in usable] for name, part in dataset.split.items()}
    if not split["train"] or not split["test"]:
        raise DataError(f"the {dataset.layout} split has no usable train or test images")
    if not split["val"] and val_fraction > 0:
        group_of = dict(zip(records, groups, strict=True)) if groups else {}
        train = split["train"]
        carved = make_split(train, val_fraction, 0.0, seed, [group_of.get(r, i) for i, r in enumerate(train)])
        split["train"], split["val"] = carved["train"], carved["test"]
    return split


def _drop_faceless(records: list[ImageRecord], config: TrainConfig, log: Log, progress: bool) -> list[ImageRecord]:
    """Detect faces up front (filling the detection cache); leave out or fail on images without one."""
    from facecheck.data.faces import NoFaceError
    from facecheck.data.images import load_image
    from facecheck.data.transforms import source_steps

    steps = source_steps(config.preprocess)
    kept, faceless = [], []
    for record in tqdm(records, desc="finding faces", unit="img", disable=not progress, leave=False):
        image = load_image(record.path, config.data.min_image_size)
        try:
            for step in steps:
                image = step(image)
        except NoFaceError:
            if config.preprocess.no_face == "fail":
                raise DataError(f"{record.path}: no face found (use --no-face keep or skip)") from None
            faceless.append(record)
        else:
            kept.append(record)
    if faceless:
        log(f"left out {len(faceless)} image(s) with no face found (--no-face skip), e.g. {faceless[0].path}")
    return kept


def _split_from_file(config: TrainConfig, data_dir: Path, records: list[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """A split file's parts, restricted to the images that are present and readable."""
    split = read_split(Path(config.data.split_file).expanduser(), data_dir)
    usable = {r.path.resolve() for r in records}
    kept = {name: [r for r in part if r.path.resolve() in usable] for name, part in split.items()}
    if not kept["train"] or not kept["test"]:
        raise DataError(f"split file {config.data.split_file} names no usable train or test images under {data_dir}")
    return kept
