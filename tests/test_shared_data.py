"""Integration on the real data in ../shared/data, when that folder is present."""

import json
from pathlib import Path

import pytest

from facecheck.cli import main

from .conftest import SHARED_DATA

FFHQ = SHARED_DATA / "ffhq-stylegan"


pytestmark = pytest.mark.slow  # trains on real data


@pytest.mark.shared_data
@pytest.mark.skipif(
    not FFHQ.is_dir(), reason=f"real data not present: {FFHQ} is missing (see docs/training.md, 'Real data')"
)
def test_brief_training_on_a_subset_of_ffhq_stylegan(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "--data",
            str(FFHQ),
            "--preset",
            "seed-mobilenet",
            "--max-per-class",
            "40",
            "--epochs",
            "1",
            "--set",
            "preprocess.image_size=128",
            "--out",
            str(run_dir),
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["test"]["n"] == 24
    assert "found 2200 images" in (run_dir / "train.log").read_text()
    # Nothing is written beside the (read-only in CI) data.
    assert not any(p.name.endswith((".pt", ".csv", ".jsonl")) for p in FFHQ.iterdir())
    code = main(["predict", "--model", str(run_dir), str(next((FFHQ / "fake").iterdir())), "--format", "json"])
    assert code == 0 and 0 <= json.loads(capsys.readouterr().out)[0]["p_fake"] <= 1
