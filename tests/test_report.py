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
    # one place: the report, and one folder beside it for everything else
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report-files", "report.html"]
    for figure in ("roc", "pr", "confusion", "reliability", "scores", "robustness"):
        assert (tmp_path / "out" / "report-files" / f"{figure}.png").is_file(), figure
    assert html.count("data:image/png;base64,") >= 6 and "95% bootstrap interval" in html
    # the shared run trained one epoch: its numbers in a table, not a curve of one dot
    assert "One epoch only: no curve to draw" in html
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


def test_report_says_which_run_it_describes_with_warnings_and_every_image(tmp_path: Path, capsys, trained_run):
    import csv

    run_dir, _ = trained_run
    report = tmp_path / "report.html"
    # Threshold 0: every image is called fake, so the report must warn, and every real is a mistake for Grad-CAM.
    code = main(["evaluate", "--model", str(run_dir), "--report", str(report), "--threshold", "0", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    page = report.read_text()
    for fact in ("preset", "seed-cnn", "trained on", "faces", "temperature", "1 planned; checkpoint from epoch 1",
                 "versions at training", "versions now", "torch", "written", "(set with --threshold)"):  # fmt: skip
        assert fact in page, fact
    assert result["warnings"] and all(warning in page for warning in result["warnings"])
    assert "calls every evaluated image fake" in page and 'class="warning"' in page
    with open(tmp_path / "report-files" / "images.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == result["n"] and set(rows[0]) == {"path", "source", "label", "p_fake", "predicted"}
    assert {row["predicted"] for row in rows} == {"fake"} and {row["label"] for row in rows} == {"real", "fake"}
    assert all(Path(row["path"]).is_file() and 0 <= float(row["p_fake"]) <= 1 for row in rows)
    assert list((tmp_path / "report-files" / "gradcam").rglob("*.gradcam.png"))  # with scale and verdict
    assert "Most confident mistakes" in page and "whatever its verdict" in page


def test_confident_mistakes_leave_out_close_calls():
    import numpy as np

    from facecheck.reporting.evaluation_report import confident_mistakes

    p_fake = np.array([0.51, 0.49, 0.95, 0.02, 0.7])
    wrong = np.array([0, 1, 2, 3, 4])
    # the two at the threshold are left out; the most confident first
    assert confident_mistakes(p_fake, wrong, 0.5).tolist() == [3, 2, 4]


def test_chance_is_said_in_words():
    from facecheck.evaluation.metrics import chance_words, result_warnings

    chance = {"n": 400, "roc_auc": 0.46, "roc_auc_ci95": [0.38, 0.55], "confusion_matrix": [[100, 100], [100, 100]]}
    assert "no better than chance" in chance_words(chance)
    assert any("no better than chance" in w for w in result_warnings(chance, "evaluated"))
    assert "wrong way round" in chance_words({"roc_auc": 0.3, "roc_auc_ci95": [0.2, 0.4]})
    assert chance_words({"roc_auc": 0.9, "roc_auc_ci95": [0.85, 0.94]}) is None


def test_one_epoch_training_curves_have_markers_and_whole_epoch_ticks():
    from facecheck.reporting.evaluation_report import training_figure

    row = {"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "eval_split": "val", "val_accuracy": 0.5, "val_roc_auc": 0.6}
    figure = training_figure([row])
    for axis in figure.axes:
        assert all(line.get_marker() not in (None, "None", "") for line in axis.get_lines())
        low, high = axis.get_xlim()
        assert low < 1 < high
        ticks = [t for t in axis.get_xticks() if low <= t <= high]
        assert ticks == [1.0]
