"""The HTML report of `facecheck evaluate --report`: metrics, curves, calibration, mistakes with Grad-CAM."""

from __future__ import annotations

import csv
import html
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facecheck.data.discovery import CLASS_NAMES
from facecheck.data.sources import SOURCE
from facecheck.evaluation.evaluate import Scores
from facecheck.evaluation.metrics import called_fake
from facecheck.files import atomic_write_text
from facecheck.inference.protocol import AnyDetector
from facecheck.reporting.html import figure_png, img, matplotlib_agg, page, report_files, table

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


def _versions(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items()) or "not recorded"


def run_header(result: dict[str, Any], detector: AnyDetector) -> str:
    """Which model this report describes, how it was trained and calibrated, on what, with which versions."""
    from facecheck.card import current_versions

    rows: list[list[Any]] = []
    members = getattr(detector, "members", None) or ([detector] if detector is not None else [])
    for number, member in enumerate(members, 1):
        card, prefix = member.card, f"model {number}: " if len(members) > 1 else ""
        training = card.training
        rows += [
            [f"{prefix}model", f"{member.source} ({card.model_name})"],
            [f"{prefix}preset", card.preset],
            [f"{prefix}trained on", ", ".join(card.trained_on)],
            [f"{prefix}epochs", f"{training.total_epochs} planned; checkpoint from epoch {card.epoch}"],
            [f"{prefix}temperature", f"{card.temperature:.4f}"],
            [f"{prefix}model's threshold", f"{card.threshold:.4f}"],
            [f"{prefix}test-time views", member.tta],
            [f"{prefix}versions at training", _versions(card.versions)],
        ]
    own = [m.card.threshold for m in members]
    used = result["threshold"]
    overridden = bool(own) and not np.isclose(used, float(np.mean(own)))
    rows += [
        ["threshold used", f"{used:.4f}" + (" (set with --threshold)" if overridden else "")],
        ["evaluated on", f"{result.get('data')}: {result['n']} images"],
        ["of which", f"{result['n_real']} real, {result['n_fake']} fake"],
        ["versions now", _versions(current_versions())],
        ["written", time.strftime("%Y-%m-%d %H:%M:%S %Z")],
    ]
    return table(["", "value"], rows)


def per_image_csv(scores: Scores, decide: Callable[[float], str]) -> str:
    """One row per scored image: path, source, true label, p_fake and the verdict it was given (``decide``:
    the model card's rule, so an image inside the uncertain band says so)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "source", "label", "p_fake", "predicted"])
    for path, label, p_fake, metadata in zip(scores.paths, scores.labels, scores.p_fake, scores.metadata, strict=True):
        predicted = decide(float(p_fake))
        writer.writerow([path, metadata.get(SOURCE, ""), CLASS_NAMES[int(label)], f"{p_fake:.6f}", predicted])
    return buffer.getvalue()


# A mistake this close to the threshold (in p_fake) is a close call, not a confident error.
CONFIDENT_MARGIN = 0.1


def confident_mistakes(
    p_fake: np.ndarray, wrong: np.ndarray, threshold: float, detector: AnyDetector | None = None
) -> np.ndarray:
    """Indices of the mistakes (``wrong``) that are confident, most confident first: at least
    :data:`CONFIDENT_MARGIN` from the threshold and, when the model has one, outside its uncertain band."""
    distance = np.abs(p_fake[wrong] - threshold)
    keep = distance >= CONFIDENT_MARGIN
    card = getattr(detector, "card", None)
    band = card.uncertain_band if card is not None and np.isclose(threshold, card.threshold) else None
    if band:  # the band belongs to the model's own threshold (--threshold drops it)
        keep &= (p_fake[wrong] < band[0]) | (p_fake[wrong] > band[1])
    return wrong[keep][np.argsort(-distance[keep])]


def training_figure(rows: list[dict[str, Any]]) -> Any:
    """Losses and monitor metrics per epoch (rows of metrics.jsonl), readable for a single epoch too."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    split = rows[0]["eval_split"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(epochs, [r["train_loss"] for r in rows], "o-", label="train loss")
    left.plot(epochs, [r["val_loss"] for r in rows], "s-", label=f"{split} loss")
    left.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="Losses")
    right.plot(epochs, [r["val_accuracy"] for r in rows], "o-", label="accuracy")
    right.plot(epochs, [r["val_roc_auc"] or np.nan for r in rows], "s-", label="ROC AUC")
    right.set(xlabel="epoch", title=f"{split} metrics")
    for axis in (left, right):
        # Whole epochs only, and room around a single one (a 1-epoch run is a point, not a line).
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axis.legend()
    return figure


def write_evaluation_report(
    result: dict[str, Any],
    scores: Scores,
    path: Path,
    detector: AnyDetector | None = None,
    run_dir: Path | None = None,
    gallery: int = 8,
) -> Path:
    """Write ``path`` (self-contained HTML) and, in one folder beside it (``<stem>-files/``), its PNG figures,
    the Grad-CAM overlays and ``images.csv`` (one row per image); returns ``path``."""
    matplotlib_agg()
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    labels, p_fake, paths = scores.labels, scores.p_fake, scores.paths
    files = report_files(path)
    files.mkdir(parents=True, exist_ok=True)
    own = detector is not None and result["threshold"] == detector.threshold
    if detector is not None:
        card, threshold = detector.card, None if own else result["threshold"]

        def decide(p: float) -> str:
            return card.decide(p, threshold)
    else:

        def decide(p: float) -> str:
            return CLASS_NAMES[int(called_fake(np.array([p]), result["threshold"])[0])]

    per_image = atomic_write_text(files / "images.csv", per_image_csv(scores, decide))

    def save(figure: Any, name: str, caption: str) -> str:
        return img(figure_png(figure, files / f"{name}.png"), caption)

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
    training_section = ""
    if history_file and history_file.is_file():
        rows = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
        if len(rows) > 1:
            figures.append(save(training_figure(rows), "training", "Training curves"))
        elif rows:  # one epoch is a point, not a curve: its numbers say more than a dot
            row = rows[0]
            training_section = "<h2>Training</h2><p>One epoch only: no curve to draw.</p>" + table(
                [
                    "train loss",
                    f"{row['eval_split']} loss",
                    f"{row['eval_split']} accuracy",
                    f"{row['eval_split']} ROC AUC",
                ],
                [[row["train_loss"], row["val_loss"], row["val_accuracy"], row["val_roc_auc"] or "n/a"]],
            )

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
    wrong = np.nonzero(called_fake(p_fake, result["threshold"]) != labels)[0]
    confident = confident_mistakes(p_fake, wrong, result["threshold"], detector)
    if len(wrong) and not len(confident):
        mistakes_section = (
            f"<h2>Confident mistakes</h2><p>None: each of the {len(wrong)} mistakes has p_fake within "
            f"{CONFIDENT_MARGIN} of the threshold or inside the uncertain band (close calls, not confident errors)."
            "</p>"
        )
    elif len(confident) and getattr(detector, "model", None) is not None:
        from facecheck.evaluation.explain import explain_files

        chosen = confident[:gallery]
        overlays = explain_files(
            detector, [Path(paths[i]) for i in chosen], files / "gradcam", threshold=result["threshold"]
        )
        cells = []
        for number, (i, entry) in enumerate(zip(chosen, overlays, strict=True), 1):
            if "heatmap" in entry:
                caption = f"{Path(paths[i]).name}: true {'fake' if labels[i] else 'real'}, p_fake {p_fake[i]:.3f}"
                # the overlay already carries its colour scale, the verdict and what the heat means
                cells.append(img(Path(entry["heatmap"]).read_bytes(), f"{number}. {caption}"))
        mistakes_section = (
            f"<h2>Most confident mistakes (Grad-CAM for 'fake')</h2><p>{len(confident)} of {len(wrong)} mistakes "
            f"lie at least {CONFIDENT_MARGIN} from the threshold (and outside the uncertain band); the most "
            "confident first. Warm colours show what pushed the model towards 'fake', whatever its verdict.</p>"
            + "".join(cells)
        )

    header = (
        f"<p>Model <code>{html.escape(str(result.get('model')))}</code> on "
        f"<code>{html.escape(str(result.get('data')))}</code>: {result['n']} images "
        f"({result['n_real']} real, {result['n_fake']} fake), threshold {result['threshold']:.3f}. "
        f"Every image's score, figures and overlays: <code>{html.escape(files.name)}/</code> "
        f"(<code>{html.escape(per_image.name)}</code>).</p>"
    )
    warnings = [f'<div class="warning">WARNING: {html.escape(w)}</div>' for w in result.get("warnings", [])]
    sections = [header, *warnings, "<h2>Run</h2>", run_header(result, detector), "<h2>Metrics</h2>"]
    sections += [_metrics_table(result), "<h2>Figures</h2>", *figures]
    sections += [training_section, perturbation_section, mistakes_section]
    path.write_text(page("facecheck evaluation", sections), encoding="utf-8")
    return path
