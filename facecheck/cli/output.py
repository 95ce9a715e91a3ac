"""How the command line prints results: tables, CSV and JSON rows, the model's scope line."""

from __future__ import annotations

from typing import Any

from facecheck.config import (
    TrainConfig,
)


def short_path(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def print_evaluation(result: dict) -> None:
    print(f"model: {result['model']}\ndata:  {result['data']}")
    print(f"images: {result['n']} (real {result['n_real']}, fake {result['n_fake']})  threshold {result['threshold']}")
    intervals = {"accuracy": result.get("accuracy_ci95"), "roc_auc": result.get("roc_auc_ci95")}
    for key in (
        "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
        "eer", "tpr_at_fpr_1pct", "tpr_at_fpr_5pct", "log_loss", "brier", "ece",
    ):  # fmt: skip
        value = result.get(key)
        shown = "n/a" if value is None else f"{value:.4f}"
        if intervals.get(key):
            shown += f"  (95% CI {intervals[key][0]:.4f}-{intervals[key][1]:.4f})"
        print(f"  {key:<18} {shown}")
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    print("  confusion matrix   predicted real  predicted fake")
    print(f"    true real        {tn:>14}  {fp:>14}\n    true fake        {fn:>14}  {tp:>14}")
    for column, values in (result.get("breakdown") or {}).items():
        print(f"  by {column:<15} {'n':>6} {'accuracy':>9} {'roc_auc':>8}")
        for value, metrics in values.items():
            auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
            print(f"    {value:<16} {metrics['n']:>6} {metrics['accuracy']:>9.4f} {auc:>8}")
    if result.get("perturbations"):
        print("  perturbation       accuracy  roc_auc")
        for name, metrics in result["perturbations"].items():
            auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.4f}"
            print(f"    {name:<16} {metrics['accuracy']:.4f}    {auc}")
    if result["n_unreadable"]:
        print(f"  {result['n_unreadable']} unreadable image(s) left out, e.g. {result['errors'][0]['error']}")


RESULT_FILE_TYPES = (".csv", ".json")


def print_prediction_table(rows: list[dict[str, Any]]) -> None:
    """``predict``'s table: one line per input with its verdict, p_fake, notices, faces and provenance."""
    width = max(len(str(row["path"])) for row in rows)
    for row in rows:
        if "error" in row:
            verdict = f"ERROR {row['error']}"
        else:
            frames = f"  (video: mean of {len(row['frames'])} frames)" if "frames" in row else ""
            notice = f"  ({row['notice']})" if row.get("notice") else ""
            verdict = f"{row['label']:<9} p_fake={row['p_fake']:.4f}{frames}{notice}{faces_note(row)}"
        declared = f"  provenance: {row['provenance']['summary']}" if row.get("provenance") else ""
        print(f"{row['path']!s:<{width}}  {verdict}{declared}")


def faces_note(row: dict[str, Any]) -> str:
    """For a picture of several faces: which one decided, and each face's verdict."""
    faces = row.get("faces") or []
    if len(faces) < 2:
        return ""
    each = ", ".join(f"{face['label']} {face['p_fake']:.2f} at {tuple(face['box'])}" for face in faces)
    return f"  ({len(faces)} faces, the most suspicious decides: {each})"


def scope_line(detector: Any, threshold: float | None = None) -> str:
    """What the model is and what it was trained on, shown beside its verdicts (``threshold``: the user's)."""
    card = detector.card
    band = f", uncertain {card.uncertain_band[0]:.2f}-{card.uncertain_band[1]:.2f}" if card.uncertain_band else ""
    what = card.scope.get("summary") or f"{card.model_name} ({card.preset})"
    # Which engine and precision gave these verdicts (bf16 where the card measured that it keeps them).
    engine = f"; run by {detector.backend}, {detector.precision}"
    trained = f"{what}; trained on {', '.join(card.trained_on)}"
    if threshold is not None:
        return f"{trained}; threshold {threshold:.3f} (set with --threshold){engine}"
    return f"{trained}; threshold {detector.threshold:.3f}{band}{engine}"


def config_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
