"""Training behaviour: one-batch smoke run, resume equivalence, progress records."""

import json
from pathlib import Path

import pytest
import torch

from facecheck.checkpoint import read_checkpoint
from facecheck.cli import main
from facecheck.training import runners
from facecheck.training.trainer import train

from .conftest import quick_config, write_face_set


def test_one_batch_smoke_run_learns_something(tmp_path: Path):
    data = write_face_set(tmp_path / "d", per_class=6)
    config = quick_config("seed-cnn", data, batch_size=64, data={"data_dir": str(data), "val_fraction": 0.0})
    result = train(config, tmp_path / "run", quiet=True)
    assert len(result.history) == 1
    assert result.history[0]["train_loss"] > 0
    assert result.history[0]["eval_split"] == "test"
    before = read_checkpoint(tmp_path / "run" / "last.pt")
    assert before["card"].epoch == 1 and "train_state" in before
    assert "train_state" not in read_checkpoint(tmp_path / "run" / "best.pt")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def test_interrupted_then_resumed_run_matches_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    data = write_face_set(tmp_path / "d", per_class=10)
    common = [
        "--preset",
        "seed-cnn",
        "--data",
        str(data),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--set",
        "preprocess.image_size=64",
        "--set",
        "optim.step_size=1",
        "--quiet",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "straight")]) == 0

    real_score = runners.score_loader
    calls = {"n": 0}

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # after epoch 2's training steps, before its checkpoint
            raise KeyboardInterrupt
        return real_score(*args, **kwargs)

    monkeypatch.setattr(runners, "score_loader", interrupt_in_epoch_two)
    assert main(["train", *common, "--out", str(tmp_path / "cut")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["card"].epoch == 1
    monkeypatch.setattr(runners, "score_loader", real_score)

    assert main(["train", "--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    straight, resumed = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    for key in straight:
        assert torch.allclose(straight[key].float(), resumed[key].float(), atol=1e-5), key
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    expected = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in expected], rel=1e-4)
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_resume_can_extend_a_finished_run(tmp_path: Path):
    data = write_face_set(tmp_path / "d", per_class=10)
    config = quick_config("seed-cnn", data)
    train(config, tmp_path / "run", quiet=True)
    longer = quick_config("seed-cnn", data, epochs=2)
    result = train(longer, tmp_path / "run", resume=True, quiet=True)
    assert [row["epoch"] for row in result.history] == [1, 2]


def test_kill_then_resume_from_the_command_line(tmp_path: Path):
    import signal
    import subprocess
    import sys
    import time

    data = write_face_set(tmp_path / "d", per_class=10)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "facecheck", "train", "--preset", "seed-cnn", "--data", str(data),
               "--out", str(run_dir), "--epochs", "40",
               "--batch-size", "4", "--set", "preprocess.image_size=32", "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run_dir / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # what `kill` sends
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    done = read_checkpoint(run_dir / "last.pt")["card"].epoch
    assert 1 <= done < 40
    again = [sys.executable, "-m", "facecheck", "train", "--out", str(run_dir), "--resume", "--epochs", str(done + 1)]
    resumed = subprocess.run([*again, "--quiet"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(run_dir / "last.pt")["card"].epoch == done + 1
