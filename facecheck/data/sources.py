"""Several data sets in one run: every image keeps its ``source`` (the set it came from).

Sources are combined, never mixed up: group ids are prefixed with the source,
splits are made inside each source (so each source is represented in train,
validation and test in its own proportions), and the ``source`` metadata
column lets ``evaluate --by source`` and the balanced sampler tell them apart.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from facecheck.config import TrainConfig
from facecheck.data.discovery import ImageRecord
from facecheck.data.layouts import Dataset, open_dataset
from facecheck.data.splits import SPLITS, make_split
from facecheck.data.synthetic import make_synthetic_dataset
from facecheck.errors import DataError

SOURCE = "source"
# The manifest column naming the model (fakes) or photo collection (reals) an image comes from.
GENERATOR = "generator"


def source_name(path: str | Path) -> str:
    """A source's name: its folder name (a manifest file: the folder holding it)."""
    resolved = Path(path).expanduser().resolve()
    return resolved.parent.name if resolved.is_file() else resolved.name


def common_root(paths: list[str | Path]) -> Path:
    """The folder that split files of these sources are written relative to."""
    resolved = [Path(p).expanduser().resolve() for p in paths]
    if len(resolved) == 1:
        return resolved[0]
    return Path(os.path.commonpath([str(p.parent if p.is_file() else p) for p in resolved]))


def open_sources(paths: list[str | Path]) -> Dataset:
    """One data set of one or more sources; each record's metadata names its source."""
    if not paths:
        raise DataError("no data sets given")
    names = [source_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise DataError(f"data sets need distinct folder names to be told apart as sources, got {names}")
    datasets = [open_dataset(p) for p in paths]
    for dataset, name in zip(datasets, names, strict=True):
        for record in dataset.records:
            dataset.metadata.setdefault(record.path, {})[SOURCE] = name
    if len(datasets) == 1:
        return datasets[0]
    records = [r for d in datasets for r in d.records]
    if len({r.path for r in records}) != len(records):
        raise DataError("the data sets overlap (an image is listed by two of them); give each image once")
    groups = {
        path: f"{name}/{group}" for d, name in zip(datasets, names, strict=True) for path, group in d.groups.items()
    }
    metadata = {path: values for d in datasets for path, values in d.metadata.items()}
    split = None
    if all(d.split is not None for d in datasets):
        split = {part: [r for d in datasets for r in (d.split or {}).get(part, [])] for part in SPLITS}
    layout = "sources: " + ", ".join(f"{n} ({d.layout})" for n, d in zip(names, datasets, strict=True))
    notes = [note for d in datasets for note in d.notes]
    return Dataset(common_root(paths), layout, records, split, groups, metadata, notes)


def sources_of(records: list[ImageRecord], metadata: dict[Path, dict[str, str]]) -> list[str]:
    return [metadata.get(r.path, {}).get(SOURCE, "") for r in records]


def split_by_source(
    records: list[ImageRecord],
    sources: list[str],
    groups: list | None,
    test_fraction: float,
    val_fraction: float,
    seed: int,
) -> dict[str, list[ImageRecord]]:
    """A stratified, group-aware split made inside each source and then joined."""
    groups = list(range(len(records))) if groups is None else list(groups)
    joined: dict[str, list[ImageRecord]] = {part: [] for part in SPLITS}
    for name in sorted(set(sources)):
        chosen = [i for i, s in enumerate(sources) if s == name]
        try:
            part = make_split(
                [records[i] for i in chosen], test_fraction, val_fraction, seed, [groups[i] for i in chosen]
            )
        except DataError as exc:
            raise DataError(f"source {name or '?'}: {exc}") from None
        for key in SPLITS:
            joined[key].extend(part[key])
    return {key: sorted(value, key=lambda r: str(r.path)) for key, value in joined.items()}


def resolve_data_dirs(config: TrainConfig, log: Callable[[str], None]) -> list[Path]:
    """A run's data sets (the built-in synthetic set when none is configured)."""
    if not config.data.data_dirs:
        path = make_synthetic_dataset()
        log(f"NOTE: no --data given: using the built-in SYNTHETIC face set at {path}")
        log("NOTE: synthetic cartoons test the tool, not detection of real fakes; use --data DIR for real images")
        return [path]
    return [Path(d).expanduser().resolve() for d in config.data.data_dirs]


def resolve_data_root(config: TrainConfig, log: Callable[[str], None]) -> Path:
    """The folder a run's split file is relative to (with several sources: their common parent; with shards:
    the folder their images were read from)."""
    from facecheck.data.shards import is_shard_spec, shard_root

    if is_shard_spec(config.data.data_dirs):
        return shard_root(config.data.data_dirs[0])
    return common_root(resolve_data_dirs(config, log))


def source_of(path: Path, data_dirs: list[str] | list[Path]) -> str:
    """The source (data-set folder name) an image lies under; "" outside all of them."""
    resolved = path.resolve()
    for folder in data_dirs:
        root = Path(folder)
        root = root.parent if root.is_file() else root
        if resolved.is_relative_to(root):
            return root.name
    return ""


def manifest_metadata(data_dirs: list[str] | list[Path]) -> dict[Path, dict[str, str]]:
    """Per image (resolved path), the metadata of its source's manifest and its source's name."""
    if not data_dirs:
        return {}
    return {path.resolve(): values for path, values in open_sources(list(data_dirs)).metadata.items()}


def collection_of(metadata: dict[str, str]) -> str:
    """An image's collection: ``source/generator`` where the manifest names a generator, else its source."""
    source = metadata.get(SOURCE, "")
    generator = metadata.get(GENERATOR)
    return f"{source}/{generator}" if generator else source
