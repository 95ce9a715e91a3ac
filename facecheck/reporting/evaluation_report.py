"""The HTML report of `facecheck evaluate --report`: metrics, curves, calibration, mistakes with Grad-CAM."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from facecheck.reporting.html import figure_png, img, matplotlib_agg, page, table

METRIC_ROWS = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
    "eer", "eer_threshold", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
)  # fmt: skip


SEVERITY_LABELS = {"jpeg": "JPEG quality (lower = harsher)", "blur": "Gaussian blur sigma (px)", "resize": "scale"}


def _metrics_table(result: dict[str, Any]) -> str:
    rows = []
    for key in METRIC_ROWS:
        value = result.get(key)
        interval = result.get(f"{key}_ci95")
        rows.append(
            [key, "n/a" if value is None else value, "" if not interval else f"{interval[0]:.4f}-{interval[1]:.4f}"]
        )
    return table(["metric", "value", "95% bootstrap interval"], rows)


def write_evaluation_report(
    result: dict[str, Any],
    labels: np.ndarray,
    p_fake: np.ndarray,
    paths: list[str],
    path: Path,
    detector: Any = None,
    run_dir: Path | None = None,
    gallery: int = 8,
) -> Path:
    """Write ``path`` (self-contained HTML) and its PNG figures beside it."""
    matplotlib_agg()
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.with_suffix("")

    def save(figure: Any, name: str, caption: str) -> str:
        return img(figure_png(figure, Path(f"{stem}-{name}.png")), caption)

    figures = []
    both = len(np.unique(labels)) == 2
    if both:
        figure, axis = plt.subplots(figsize=(4.5, 4))
        RocCurveDisplay.from_predictions(labels, p_fake, ax=axis, name="model", plot_chance_level=True)
        axis.set(xlabel="false-positive rate (reals called fake)", ylabel="true-positive rate", title="ROC")
        axis.legend(loc="lower right")
        figures.append(save(figure, "roc", "ROC curve"))
        figure, axis = plt.subplots(figsize=(4.5, 4))
        PrecisionRecallDisplay.from_predictions(labels, p_fake, ax=axis, name="model", drop_intermediate=True)
        axis.set(xlabel="recall (fakes caught)", ylabel="precision", title="Precision-recall (fake = positive)")
        axis.legend(loc="lower left")
        figures.append(save(figure, "pr", "Precision-recall curve"))

    figure, axis = plt.subplots(figsize=(4, 3.6))
    ConfusionMatrixDisplay(np.array(result["confusion_matrix"]), display_labels=["real", "fake"]).plot(
        ax=axis, cmap="Blues", colorbar=False
    )
    axis.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix (threshold {result['threshold']:.3f})")
    figures.append(save(figure, "confusion", "Confusion matrix"))

    bins = np.linspace(0, 1, 11)
    observed, centres = calibration_curve(labels, p_fake, n_bins=10, pos_label=1)
    # Images per bin, binned as calibration_curve does (it drops the empty bins).
    counts = np.bincount(np.searchsorted(bins[1:-1], p_fake), minlength=10)
    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.bar(bins[:-1], counts / max(counts.max(), 1), width=0.1, align="edge", color="0.85", label="images per bin")
    for left, count in zip(bins[:-1], counts, strict=True):
        if count:
            axis.text(left + 0.05, 0.01, str(count), ha="center", va="bottom", fontsize=7, rotation=90)
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    axis.plot(centres, observed, "o-", label=f"model (ECE {result['ece']:.4f})")
    axis.set(xlabel="predicted p_fake (bin mean)", ylabel="observed fraction fake", title="Reliability diagram")
    axis.legend(loc="upper left", fontsize=8)
    figures.append(save(figure, "reliability", "Reliability diagram (grey bars: share of images in each bin)"))

    figure, axis = plt.subplots(figsize=(4.5, 4))
    for label, name in ((0, "real"), (1, "fake")):
        if (labels == label).any():
            axis.hist(p_fake[labels == label], bins=bins, alpha=0.6, label=name)
    axis.axvline(result["threshold"], color="k", linewidth=0.8)
    axis.set(xlabel="p_fake", ylabel="images", title="Scores by true class")
    axis.legend()
    figures.append(save(figure, "scores", "Score histograms per class"))

    history_file = run_dir / "metrics.jsonl" if run_dir else None
    if history_file and history_file.is_file():
        rows = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
        epochs = [r["epoch"] for r in rows]
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train loss")
        left.plot(epochs, [r["val_loss"] for r in rows], "o-", label=f"{rows[0]['eval_split']} loss")
        left.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="Losses")
        left.legend()
        right.plot(epochs, [r["val_accuracy"] for r in rows], "o-", label="accuracy")
        right.plot(epochs, [r["val_roc_auc"] or np.nan for r in rows], "o-", label="ROC AUC")
        right.set(xlabel="epoch", title=f"{rows[0]['eval_split']} metrics")
        right.legend()
        figures.append(save(figure, "training", "Training curves"))

    perturbations = result.get("perturbations") or {}
    perturbation_section = ""
    if perturbations:
        kinds: dict[str, list[tuple[float, float]]] = {}
        for name, metrics in perturbations.items():
            kind, severity = name.split(":")
            kinds.setdefault(kind, []).append((float(severity), metrics["roc_auc"] or np.nan))
        figure, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False)
        for axis, (kind, points) in zip(axes[0], kinds.items(), strict=True):
            points.sort()
            axis.plot([p[0] for p in points], [p[1] for p in points], "o-")
            axis.axhline(result["roc_auc"] or np.nan, color="k", linestyle="--", linewidth=0.8, label="clean")
            axis.set(xlabel=SEVERITY_LABELS.get(kind, kind), ylabel="ROC AUC", title=kind)
            axis.legend()
        figure.tight_layout()
        figures.append(save(figure, "robustness", "ROC AUC under perturbations"))
        perturbation_section = "<h2>Robustness</h2>" + table(
            ["perturbation", "accuracy", "ROC AUC", "ROC AUC change"],
            [
                [name, m["accuracy"], "n/a" if m["roc_auc"] is None else m["roc_auc"],
                 "n/a" if m["roc_auc"] is None or result["roc_auc"] is None else m["roc_auc"] - result["roc_auc"]]
                for name, m in perturbations.items()
            ],
        )  # fmt: skip

    mistakes_section = ""
    wrong = np.nonzero((p_fake >= result["threshold"]).astype(int) != labels)[0]
    if len(wrong) and getattr(detector, "model", None) is not None:
        from facecheck.evaluation.explain import explain_files

        confidence = np.abs(p_fake[wrong] - result["threshold"])
        chosen = wrong[np.argsort(-confidence)][:gallery]
        overlays = explain_files(detector, [Path(paths[i]) for i in chosen], Path(f"{stem}-gradcam"))
        cells = []
        for i, entry in zip(chosen, overlays, strict=True):
            if "heatmap" in entry:
                caption = f"{Path(paths[i]).name}: true {'fake' if labels[i] else 'real'}, p_fake {p_fake[i]:.3f}"
                cells.append(img(Path(entry["heatmap"]).read_bytes(), caption))
        mistakes_section = "<h2>Most confident mistakes (Grad-CAM for 'fake')</h2>" + "".join(cells)

    header = (
        f"<p>Model <code>{html.escape(str(result.get('model')))}</code> on "
        f"<code>{html.escape(str(result.get('data')))}</code>: {result['n']} images "
        f"({result['n_real']} real, {result['n_fake']} fake), threshold {result['threshold']:.3f}.</p>"
    )
    sections = [header, "<h2>Metrics</h2>", _metrics_table(result), "<h2>Figures</h2>", *figures]
    sections += [perturbation_section, mistakes_section]
    path.write_text(page("facecheck evaluation", sections), encoding="utf-8")
    return path
