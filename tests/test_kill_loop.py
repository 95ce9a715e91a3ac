"""benchmarks/kill_loop.py: how it reads a run folder after a kill, and a two-kill loop end to end."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facecheck.run_folder import RunFolder

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_loop.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("kill_loop_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_states_are_read_from_the_folder(tmp_path: Path, trained_run):
    kill_loop = load_benchmark()
    assert kill_loop.describe(kill_loop.run_state(RunFolder(tmp_path / "none")), 3) == "starting (no run folder yet)"
    run = RunFolder(tmp_path / "run")
    shutil.copytree(trained_run[0], run.path)
    finished = kill_loop.run_state(run)
    assert finished["finished"] and finished["epochs_done"] == 1 and finished["checkpoints_read"]
    assert kill_loop.describe(finished, 1) == "finished (1 epochs)"
    (run / RunFolder.SUMMARY).unlink()
    assert kill_loop.describe(kill_loop.run_state(run), 3) == "epoch 1/3 done"
    run.last.write_bytes(b"PK\x03\x04 cut short")
    (run / ".last.pt.abc.tmp").write_bytes(b"half")
    broken = kill_loop.run_state(run)
    assert not broken["checkpoints_read"] and broken["temporary_files"] == [".last.pt.abc.tmp"]
    assert kill_loop.weights_difference(run.best, trained_run[0] / "best.pt") == 0.0


@pytest.mark.slow  # trains a run three times over, with kills
def test_two_kills_then_the_run_completes(tmp_path: Path):
    out = tmp_path / "kill2.json"
    command = [sys.executable, str(BENCHMARK), "--kills", "2", "--epochs", "2", "--per-class", "8",
               "--max-delay", "8", "--no-reference", "--out", str(out)]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    record = json.loads(out.read_text())
    assert record["ok"] and len(record["kills"]) == 2 and record["final"]["completed"]
    assert "survived 2/2 kills" in finished.stdout
