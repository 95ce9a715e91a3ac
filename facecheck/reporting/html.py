"""Building one self-contained HTML file: tables and PNG figures embedded as data URIs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; } td, th { border: 1px solid #ccc; padding: .25rem .6rem; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: .5rem 1rem; margin: .5rem 0; }
.ok { background: #e8f5e9; border-left: 4px solid #43a047; padding: .5rem 1rem; }
figure { display: inline-block; margin: .5rem; max-width: 100%; } img { max-width: 100%; }  /* never upscaled */
"""


def report_files(path: Path) -> Path:
    """The one folder beside a report that holds everything else it writes (figures, overlays, per-image CSV)."""
    return path.with_name(f"{path.stem}-files")


def figure_png(figure: Any, path: Path | None = None) -> bytes:
    """PNG bytes of a matplotlib figure (also written to ``path`` when given); closes the figure."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    data = buffer.getvalue()
    if path is not None:
        path.write_bytes(data)
    return data


def img(data: bytes, caption: str) -> str:
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f'<td class="num">{value:.4f}</td>'
        if isinstance(value, int):
            return f'<td class="num">{value}</td>'
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def page(title: str, sections: list[str]) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>"
    )


def matplotlib_agg() -> None:
    """Render without a display (servers, CI)."""
    from facecheck.extras import require

    require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg")
