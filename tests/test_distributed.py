"""Training in several processes (DDP over gloo): the batch rules, the shared order, and a real 2-process run.

The end-to-end test starts 2 CPU processes through ``facecheck train
--nproc-per-node 2`` (torchrun underneath), trains, resumes and evaluates, and
compares the loss curve with one process trained on the same global batches.
The two can differ only by floating-point summation order (one process with
2 threads against two with 1 each, a mean of two half-batch means): with
augmentation and dropout off and BatchNorm synchronised, the losses agree to
a relative 1e-4 (measured: at most 5e-6). Without --sync-batchnorm each process
normalises with its own half batch's statistics and the curves differ by
percents, which is why the test synchronises them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from facecheck.checkpoint import read_checkpoint
from facecheck.cli import main
from facecheck.config import merge
from facecheck.errors import ConfigError
from facecheck.training.distributed import DistContext, ShardedWeightedSampler, seed_base
from facecheck.training.launch import without_launch_option
from facecheck.training.runners import FeatureRunner, ImageRunner, Phase

from .conftest import quick_config, write_face_set


def test_batch_size_is_global_and_must_divide():
    assert DistContext(rank=1, world_size=4).local_batch_size(32) == 8
    assert DistContext().local_batch_size(7) == 7
    with pytest.raises(ConfigError, match="global batch"):
        DistContext(rank=0, world_size=3).local_batch_size(32)


def test_nproc_that_does_not_divide_the_batch_is_refused_before_launching(tmp_path, capsys):
    code = main(["train", "--preset", "seed-cnn", "--batch-size", "8", "--nproc-per-node", "3",
                 "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 2
    assert "must divide among 3 processes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_each_process_runs_the_command_without_the_launch_option():
    argv = ["train", "--nproc-per-node", "2", "--out", "r", "--nproc-per-node=4", "--quiet"]
    assert without_launch_option(argv) == ["train", "--out", "r", "--quiet"]


def test_default_threads_are_shared_out_among_the_processes_of_a_node(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(8)))
    assert DistContext(rank=0, world_size=4, local_world_size=4).threads(0) == 2
    assert DistContext(rank=0, world_size=16, local_world_size=2).threads(0) == 4
    assert DistContext(rank=0, world_size=4, local_world_size=4).threads(3) == 3  # asked for: kept
    assert DistContext().threads(0) == 0  # alone: the usual rule (facecheck.compute.configure_threads)


def _runner(config, dataset, rank: int, world: int, weights=None) -> ImageRunner:
    return ImageRunner(dataset, dataset, config, torch.device("cpu"), None, False, weights,
                       DistContext(rank=rank, world_size=world))  # fmt: skip


def test_processes_split_exactly_the_global_batches_of_one_process(tmp_path):
    config = quick_config("seed-cnn", None, batch_size=8)
    dataset = list(range(21))  # any sized sequence will do for the sampler
    alone = list(_runner(config, dataset, 0, 1).sampler(torch.Generator(), epoch=3))
    assert sorted(alone) == dataset
    shares = [list(_runner(config, dataset, r, 2).sampler(torch.Generator(), epoch=3)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 11  # padded to a multiple of 2 with the first index
    local = 4
    for step in range(3):
        global_batch = alone[step * 8 : (step + 1) * 8]
        assert sorted(shares[0][step * local : (step + 1) * local] + shares[1][step * local : (step + 1) * local]) == (
            sorted(global_batch) if step < 2 else sorted([*global_batch, alone[0]])
        )
    other_epoch = list(_runner(config, dataset, 0, 1).sampler(torch.Generator(), epoch=4))
    assert other_epoch != alone


def test_balanced_sampling_is_one_shared_draw():
    weights = torch.tensor([1.0, 1.0, 1.0, 5.0, 5.0])
    shares = [ShardedWeightedSampler(weights, seed_base(0), rank, 2) for rank in range(2)]
    for sampler in shares:
        sampler.set_epoch(2)
    drawn = torch.multinomial(weights, 5, True, generator=torch.Generator().manual_seed(seed_base(0) + 2)).tolist()
    padded = [*drawn, drawn[0]]  # 5 draws padded to 6: 3 each
    assert list(shares[0]) == padded[0::2] and list(shares[1]) == padded[1::2]


def test_feature_epochs_split_one_order_among_processes():
    config = merge(quick_config("seed-cnn", None), {"batch_size": 4})
    views = [torch.arange(10, dtype=torch.float32).unsqueeze(1)]
    labels = torch.zeros(10, dtype=torch.long)
    seen: dict[int, list[list[int]]] = {}

    class Recorder(torch.nn.Module):
        def __init__(self, rank: int) -> None:
            super().__init__()
            self.rank, self.linear = rank, torch.nn.Linear(1, 2)

        def forward(self, features):
            seen.setdefault(self.rank, []).append(features[:, 0].int().tolist())
            return self.linear(features)

    class Model(torch.nn.Module):
        def __init__(self, rank: int) -> None:
            super().__init__()
            self.backbone, self.head, self.blocks = torch.nn.Identity(), Recorder(rank), ()

    class Unconnected(DistContext):  # no process group in this test: the epoch's sums stay local
        def sum(self, values: list[float]) -> list[float]:
            return list(values)

    phase = Phase("head", 1, 1, 0.1, 0)
    for rank, world in ((-1, 1), (0, 2), (1, 2)):
        model = Model(rank)
        runner = FeatureRunner(views, labels, views[0], labels, config, torch.device("cpu"),
                               Unconnected(rank=max(rank, 0), world_size=world))  # fmt: skip
        runner.head = model.head  # no process group here: the gradient averaging is DDP's job
        optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
        runner.train_epoch(model, phase, optimizer, torch.Generator().manual_seed(5), "t")
    alone = seen[-1]
    assert [len(b) for b in alone] == [4, 4, 2]
    for step, batch in enumerate(alone):  # 10 items divide between 2: no padding, the same global batches
        assert sorted(seen[0][step] + seen[1][step]) == sorted(batch)


def _write_split(data: Path, path: Path) -> Path:
    """An explicit split with an even training count (16), so no process pads its share with a repeat."""
    rows = []
    for label in ("real", "fake"):
        files = sorted((data / label).glob("*.png"))
        parts = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
        rows += [(f.relative_to(data).as_posix(), label, part) for f, part in zip(files, parts, strict=True)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return path


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_train_resume_and_evaluate_like_one(tmp_path: Path, capfd):
    data = write_face_set(tmp_path / "faces", per_class=12)
    split = _write_split(data, tmp_path / "split.csv")
    common = [
        "--preset", "seed-cnn", "--data", str(data), "--split-file", str(split), "--batch-size", "8",
        "--set", "preprocess.image_size=32", "--set", "model.dropout=0", "--augment", "none",
        "--set", "preprocess.hflip_prob=0", "--set", "preprocess.rotation_degrees=0", "--precision", "fp32",
        "--set", "data.inspect=false", "--set", "optim.step_size=1", "--quiet",
    ]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *common, "--epochs", "3", "--out", str(one)]) == 0
    capfd.readouterr()

    code = main(["train", *common, "--epochs", "2", "--out", str(two), "--nproc-per-node", "2", "--sync-batchnorm"])
    out, err = capfd.readouterr()
    assert code == 0, err
    answers = [line for line in out.splitlines() if line.startswith("{")]
    assert len(answers) == 1 and json.loads(answers[0])["run_dir"] == str(two)  # rank 0 alone answers
    assert read_checkpoint(two / "last.pt")["card"].epoch == 2
    log = (two / "train.log").read_text()
    assert "2 processes (gloo), batch 4 per process (global 8), synchronised BatchNorm" in log
    assert "1 threads per process" in log  # 2 cores shared out (the test machine's); CI has 2 as well

    code = main(["train", "--out", str(two), "--resume", "--epochs", "3", "--nproc-per-node", "2", "--quiet"])
    out, err = capfd.readouterr()
    assert code == 0, err
    rows, expected = _rows(two), _rows(one)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in rows] == pytest.approx([r[key] for r in expected], rel=1e-4), key
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    # Weights are not compared one by one: a conv bias before BatchNorm has a true gradient of 0, and Adam turns
    # the rounding noise there into lr-sized steps. What the model computes is compared instead (below).
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["sync_batchnorm"] is True

    assert main(["evaluate", "--model", str(two), "--json"]) == 0
    evaluated = json.loads(capfd.readouterr().out)
    assert evaluated["n"] == 4
    assert main(["evaluate", "--model", str(one), "--json"]) == 0
    assert evaluated["log_loss"] == pytest.approx(json.loads(capfd.readouterr().out)["log_loss"], rel=1e-3)
