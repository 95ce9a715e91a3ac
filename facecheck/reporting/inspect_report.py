"""The HTML report of `facecheck data inspect`: per-class tables, duplicates, shortcuts and histograms."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from facecheck.reporting.html import figure_png, img, matplotlib_agg, page, report_files, table


def write_inspect_report(report: dict[str, Any], path: Path) -> Path:
    matplotlib_agg()
    import matplotlib.pyplot as plt

    facts = report["facts"]
    files = report_files(path)  # the PNGs go into one folder beside the report
    files.mkdir(parents=True, exist_ok=True)
    sections = [f"<p>Data: <code>{html.escape(report['root'])}</code>, {report['n']} images.</p>"]
    if report["shortcuts"]:
        sections += [f'<div class="warning">{html.escape(w["message"])}</div>' for w in report["shortcuts"]]
    else:
        sections.append('<div class="ok">No single property separates the classes.</div>')
    rows = []
    for name, info in report["per_class"].items():
        quality = info["jpeg_quality"]["median"]
        rows.append(
            [
                name,
                info["count"],
                info["unreadable"],
                ", ".join(f"{k} ({v})" for k, v in info["sizes"].items()),
                ", ".join(f"{k} ({v})" for k, v in info["formats"].items()),
                ", ".join(f"{k} ({v})" for k, v in info["modes"].items()),
                "n/a" if quality is None else f"{quality:g}",
                info["with_exif"],
                f"{info['file_size_bytes']['median'] / 1024:.1f}",
            ]
        )
    sections += [
        "<h2>Per class</h2>",
        table(
            ["class", "images", "unreadable", "sizes", "formats", "modes", "JPEG quality (median)", "EXIF", "KiB"],
            rows,
        ),
    ]
    figures = []
    for key, label in (("jpeg_quality", "estimated JPEG quality"), ("file_size", "file size (bytes)")):
        figure, axis = plt.subplots(figsize=(5, 3))
        for class_index, name in enumerate(("real", "fake")):
            values = [f[key] for f in facts if f["label"] == class_index and f[key] is not None]
            if values:
                axis.hist(values, bins=30, alpha=0.6, label=name)
        axis.set_xlabel(label)
        axis.set_ylabel("images")
        axis.legend()
        figures.append(img(figure_png(figure, files / f"{key}.png"), f"{label} by class"))
    sections += ["<h2>Distributions</h2>", *figures]
    duplicates = report["duplicates"]
    sections.append(
        f"<h2>Duplicates</h2><p>{duplicates['exact_sets']} exact and {duplicates['near_sets']} near-duplicate "
        f"sets, {duplicates['across_classes']} spanning both classes. Training keeps each set on one side of "
        "the split.</p>"
    )
    if duplicates["sets"]:
        sections.append(
            table(
                ["kind", "classes", "files"],
                [[d["kind"], ", ".join(d["classes"]), " | ".join(d["paths"])] for d in duplicates["sets"][:200]],
            )
        )
    if report["unreadable"]:
        sections += [
            "<h2>Unreadable files</h2>",
            table(["path", "error"], [[u["path"], u["error"]] for u in report["unreadable"][:200]]),
        ]
    path.write_text(page("facecheck data inspection", sections), encoding="utf-8")
    return path
