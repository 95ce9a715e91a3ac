"""Prediction results as a table: one CSV line per input (``predict --out X.csv``, ``--format csv``)."""

from __future__ import annotations

import csv
import io
from typing import Any

# notice: what limits the verdict (no face, no face check here, a picture far from the model's size).
# faces: how many faces were judged; face_box: the deciding face's box (left top right bottom, pixels).
# provenance: the summary of what the file declares about itself (--format json has the evidence).
PREDICTION_COLUMNS = ["path", "p_fake", "label", "notice", "faces", "face_box", "error", "provenance"]


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A result in one line: the face list becomes its count and the deciding face's box, the provenance its
    summary."""
    faces, decided = row.get("faces"), row.get("decided_by")
    flat = {**row, "faces": None if faces is None else len(faces)}
    flat["provenance"] = (row.get("provenance") or {}).get("summary")
    if faces and decided is not None:
        flat["face_box"] = " ".join(str(v) for v in faces[decided]["box"])
    return flat


def prediction_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PREDICTION_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_flat_row(row) for row in rows)
    return buffer.getvalue()
