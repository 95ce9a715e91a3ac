"""The run folder: resume rules, crash points, temporary files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facecheck.checkpoint import read_checkpoint
from facecheck.config import merge
from facecheck.errors import FacecheckError
from facecheck.run_folder import RunFolder
from facecheck.training.trainer import train


@pytest.fixture
def finished_run(tmp_path: Path, trained_run) -> tuple[Path, object]:
    """A copy of the shared trained run (these tests change it)."""
    run, _ = trained_run
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", RunFolder(run).load_config()


def test_resume_refuses_another_recipe_instead_of_rewriting_it(finished_run):
    run_dir, config = finished_run
    saved = (run_dir / RunFolder.CONFIG).read_text()
    with pytest.raises(FacecheckError, match=r"differ.*optim"):
        train(merge(config, {"optim": {"lr": 0.5}}), run_dir, resume=True, quiet=True)
    assert (run_dir / RunFolder.CONFIG).read_text() == saved


def test_resume_may_extend_the_epochs(finished_run):
    run_dir, config = finished_run
    result = train(merge(config, {"epochs": 2}), run_dir, resume=True, quiet=True)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert RunFolder(run_dir).load_config().epochs == 2


def test_new_run_refuses_a_folder_that_holds_one(finished_run):
    run_dir, config = finished_run
    with pytest.raises(FacecheckError, match="already holds a run") as refused:
        train(config, run_dir, quiet=True)
    # a Python caller gets Python's words (resume=True), not the command line's options
    assert "resume=True" in str(refused.value) and "--" not in str(refused.value)


def test_crash_before_the_first_last_pt_still_resumes(finished_run):
    """A kill during the first epoch's last.pt write leaves config, split and best.pt but no last.pt."""
    run_dir, config = finished_run
    (run_dir / "last.pt").unlink()
    (run_dir / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    result = train(config, run_dir, resume=True, quiet=True)
    assert result.best_epoch == 1
    assert not list(run_dir.glob(".*.tmp"))
    assert read_checkpoint(run_dir / "last.pt")["card"].epoch == 1
    assert "removed .last.pt.abc123.tmp" in (run_dir / RunFolder.LOG).read_text()


def test_resume_without_prepared_data_says_so(tmp_path: Path):
    with pytest.raises(FacecheckError, match="nothing to resume"):
        RunFolder(tmp_path / "empty").resume_config(None)
