"""WebDataset shards: written by `data shard`, streamed per process and loader worker, trained on."""

from __future__ import annotations

import csv
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from facecheck.cli import main

from .conftest import write_face_set

pytest.importorskip("webdataset", reason="needs pip install 'facecheck[distributed]' (webdataset)")

from facecheck.data.shards import ShardSet, ShardStream


@pytest.fixture
def shards(tmp_path: Path, capfd) -> tuple[Path, Path]:
    data = write_face_set(tmp_path / "faces", per_class=12)
    out = tmp_path / "shards"
    assert main(["data", "shard", str(data), "--out", str(out), "--shard-size", "4", "--no-inspect"]) == 0
    summary = json.loads(capfd.readouterr().out)
    assert (
        summary["splits"]["train"]["images"] + summary["splits"]["val"]["images"] + summary["splits"]["test"]["images"]
        == 24
    )
    return data, out


def test_shards_hold_the_files_bytes_labels_and_metadata(shards):
    data, out = shards
    manifest = json.loads((out / "shards.json").read_text())
    seen = {}
    for name, part in manifest["splits"].items():
        assert [s["file"] for s in part["shards"]] == [f"{name}-{i:06d}.tar" for i in range(len(part["shards"]))]
        for shard in part["shards"]:
            with tarfile.open(out / shard["file"]) as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
            keys = sorted({n.split(".")[0] for n in members})
            assert len(keys) == shard["count"] <= 4
            for key in keys:
                meta = json.loads(members[f"{key}.json"])
                assert meta["split"] == name and meta["source"] == "faces" and meta["group"]
                assert members[f"{key}.png"] == (data / meta["path"]).read_bytes()  # the file itself, not re-encoded
                assert members[f"{key}.cls"] == (b"1" if meta["label"] == "fake" else b"0")
                seen[meta["path"]] = name
    assert len(seen) == 24
    with open(out / "index.csv") as handle:
        assert {row["path"]: row["split"] for row in csv.DictReader(handle)} == seen
    train_shards = manifest["splits"]["train"]["shards"]
    assert any(0 < s["classes"][1] < s["count"] for s in train_shards)  # shuffled before writing: classes mixed


def _fingerprint(image) -> str:
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()[:12]


def test_each_process_reads_its_own_shards_and_all_take_the_same_number(shards, monkeypatch):
    _, out = shards
    shard_set = ShardSet.open(str(out / "train-{000000..000003}.tar"))
    assert len(shard_set.train) == 4
    count = shard_set.count("train")
    per_process = -(-count // 2)
    taken = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = ShardStream(shard_set.urls("train"), _fingerprint, per_process=per_process, seed=0, buffer=8)
        stream.set_epoch(1)
        taken[rank] = [item for item, _label in stream]
        assert len(taken[rank]) == per_process
    everything = {_fingerprint(img) for img, _ in ShardStream(shard_set.urls("train"), lambda i: i)._samples(0)}
    # Disjoint shards per process (a process that runs short starts its own shards again, never another's).
    assert not set(taken[0]) & set(taken[1])
    assert set(taken[0]) | set(taken[1]) <= everything
    assert len(set(taken[0]) | set(taken[1])) >= count - 1


def test_loader_workers_split_a_process_s_shards(shards):
    from torch.utils.data import DataLoader

    _, out = shards
    shard_set = ShardSet.open(str(out))
    count = shard_set.count("train")
    stream = ShardStream(shard_set.urls("train"), _fingerprint, per_process=count, seed=0, buffer=8)
    # Spawned workers: forking the test process, which earlier tests left with OpenVINO and Ray threads, once
    # crashed it (a segfault in CI that did not recur).
    loader = DataLoader(stream, batch_size=None, num_workers=2, multiprocessing_context="spawn")
    items = [item for item, _label in loader]
    # Two workers, each its own shards and half the quota: together the process's quota. Shards of 4, 4, 4 and
    # 3 images give the workers 8 and 7 images for quotas of 8 and 7 (or 7 and 8: one then repeats one image).
    assert len(items) == count and len(set(items)) >= count - 1


def test_a_pattern_naming_foreign_shards_is_refused(shards):
    from facecheck.errors import DataError

    _, out = shards
    with pytest.raises(DataError, match="not a training shard"):
        ShardSet.open(str(out / "test-{000000..000001}.tar"))


@pytest.mark.slow
def test_training_streams_shards_resumes_and_evaluates(shards, tmp_path: Path, capfd):
    _, out = shards
    run = tmp_path / "run"
    common = ["--preset", "seed-cnn", "--batch-size", "4", "--set", "preprocess.image_size=32", "--quiet"]
    pattern = str(out / "train-{000000..000003}.tar")
    assert main(["train", "--data", pattern, *common, "--epochs", "1", "--out", str(run)]) == 0
    capfd.readouterr()
    log = (run / "train.log").read_text()
    assert "streaming WebDataset shards" in log and "4 training shard(s)" in log
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    capfd.readouterr()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["train_loss"] > 0 for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    test_count = json.loads((out / "shards.json").read_text())["splits"]["test"]["count"]
    assert summary["test"]["n"] == test_count  # tested on the test shards
    assert main(["evaluate", "--model", str(run), "--json"]) == 0  # the run's split names the original files
    assert json.loads(capfd.readouterr().out)["n"] == test_count


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_train_on_shards(shards, tmp_path: Path, capfd):
    _, out = shards
    run = tmp_path / "run2"
    code = main(["train", "--data", str(out / "train-{000000..000003}.tar"), "--preset", "seed-cnn", "--epochs", "1",
                 "--batch-size", "4", "--set", "preprocess.image_size=32", "--quiet", "--out", str(run),
                 "--nproc-per-node", "2"])  # fmt: skip
    assert code == 0, capfd.readouterr().err
    log = (run / "train.log").read_text()
    assert "2 processes (gloo), batch 2 per process" in log
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_loss"] > 0 and row["val_loss"] > 0
    assert json.loads((run / "summary.json").read_text())["processes"] == 2
