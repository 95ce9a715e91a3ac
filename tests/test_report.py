"""Evaluation output: several sets in one table, metadata breakdown, the HTML report with its figures."""

import json
from pathlib import Path

from facecheck.cli import main

from .conftest import write_face_set


def test_report_sets_and_breakdown(tmp_path: Path, capsys, trained_run):
    run_dir, data = trained_run
    other = write_face_set(tmp_path / "other", per_class=4, seed=3)
    rows = ["path,label,source"] + [
        f"{p.relative_to(other)},{p.parent.name},{'a' if i % 2 else 'b'}"
        for i, p in enumerate(sorted(other.rglob("*.png")))
    ]
    (other / "manifest.csv").write_text("\n".join(rows) + "\n")

    report = tmp_path / "out" / "report.html"
    code = main(["evaluate", "--model", str(run_dir), "--report", str(report), "--perturb", "jpeg:50", "--json"])
    assert code == 0
    html = report.read_text()
    for figure in ("roc", "pr", "confusion", "reliability", "scores", "training", "robustness"):
        assert (tmp_path / "out" / f"report-{figure}.png").is_file(), figure
    assert html.count("data:image/png;base64,") >= 7 and "95% bootstrap interval" in html
    capsys.readouterr()

    code = main(["evaluate", "--model", str(run_dir), "--data", str(data), "--data", str(other), "--json"])
    assert code == 0
    sets = json.loads(capsys.readouterr().out)["sets"]
    assert [s["n"] for s in sets] == [6, 8]
    assert main(["evaluate", "--model", str(run_dir), "--data", str(data), "--data", str(other)]) == 0
    table = capsys.readouterr().out
    assert "roc_auc" in table and str(other)[-20:] in table

    assert main(["evaluate", "--model", str(run_dir), "--data", str(other), "--by", "source", "--json"]) == 0
    breakdown = json.loads(capsys.readouterr().out)["breakdown"]["source"]
    assert set(breakdown) == {"a", "b"} and breakdown["a"]["n"] + breakdown["b"]["n"] == 8
    assert main(["evaluate", "--model", str(run_dir), "--data", str(other), "--by", "nope"]) == 2
    assert "no image" in capsys.readouterr().err
