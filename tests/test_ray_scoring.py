"""Batch scoring on Ray (``predict --engine ray``): the same scores as plain predict, and restartable.

One local Ray with 2 CPUs (started by facecheck's own start_ray) serves the
whole module: Ray's start-up takes seconds, so the checks share it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facecheck.cli import main
from facecheck.errors import FacecheckError
from facecheck.inference.ray_scoring import ScoringJob, _check_manifest, plan_partitions

pytestmark = pytest.mark.distributed


def test_partitions_are_consecutive_and_named_by_their_files_and_model(tmp_path: Path):
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    parts = plan_partitions(paths, 2, "model-a")
    assert [len(p.paths) for p in parts] == [2, 2, 1]
    assert [p.file[:10] for p in parts] == ["part-00000", "part-00001", "part-00002"]
    assert [p.file for p in plan_partitions(paths, 2, "model-a")] == [p.file for p in parts]  # deterministic
    assert plan_partitions(paths, 2, "model-b")[0].file != parts[0].file
    assert plan_partitions(paths[1:], 2, "model-a")[0].file != parts[0].file


def test_an_output_folder_holds_one_job(tmp_path: Path):
    job = ScoringJob(b"onnx", {"card": 1}, None, None, 32)
    parts = plan_partitions([tmp_path / "a.png"], 2, job.digest)
    _check_manifest(tmp_path / "out", job, parts)
    _check_manifest(tmp_path / "out", job, parts)  # the same job again: continued
    other = ScoringJob(b"other onnx", {"card": 1}, None, None, 32)
    with pytest.raises(FacecheckError, match="another model or other inputs"):
        _check_manifest(tmp_path / "out", other, plan_partitions([tmp_path / "a.png"], 2, other.digest))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="needs pip install 'facecheck[distributed]' (ray)")
    from facecheck.inference.ray_scoring import start_ray

    assert start_ray(num_cpus=2)  # later calls in this module find it running and leave it so
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_scores_equal_plain_predict_and_a_rerun_scores_only_missing_partitions(
    trained_run, local_ray, tmp_path: Path, capsys
):
    from facecheck.inference.ray_scoring import read_scores

    run, data = trained_run
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    inputs = [str(data), str(bad)]
    out = tmp_path / "scores.parquet"
    ray_args = ["predict", "--model", str(run), *inputs, "--engine", "ray", "--out", str(out),
                "--ray-actors", "2", "--partition-size", "8"]  # fmt: skip
    assert main(ray_args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary | {"out": None} == {"out": None, "partitions": 3, "scored_partitions": 3,
                                       "skipped_partitions": 0, "images": 21, "errors": 1}  # fmt: skip
    scored = read_scores(out)

    assert main(["predict", "--model", str(run), *inputs, "--format", "json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in scored] == [row["path"] for row in plain]
    for ours, theirs in zip(scored, plain, strict=True):
        if "error" in theirs:
            assert ours["p_fake"] is None and ours["label"] is None and ours["error"] == theirs["error"]
        else:
            assert ours["p_fake"] == pytest.approx(theirs["p_fake"], abs=1e-5)
            assert ours["label"] == theirs["label"] and ours["error"] is None

    parts = sorted(out.glob("part-*.parquet"))
    kept = {p: p.stat().st_mtime_ns for p in (parts[0], parts[2])}
    parts[1].unlink()  # as if the job had stopped before this partition was written
    assert main([*ray_args, "--ray-actors", "1"]) == 0  # the actor count is not part of the job
    again = json.loads(capsys.readouterr().out)
    assert (again["scored_partitions"], again["skipped_partitions"], again["images"]) == (1, 2, 21)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished partitions were not scored again
    assert read_scores(out) == scored
