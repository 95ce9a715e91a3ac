"""The parts import one way (docs/architecture.md): no module imports a part above its own layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facecheck"
# Lower numbers sit lower; a module may import its own layer and those below it, never above.
LAYERS = {
    "choices": 0, "errors": 0, "files": 0, "version": 0, "cpu": 0,
    "config": 1, "device": 1, "paths": 1, "extras": 1,
    "card": 2, "data": 2, "models": 2, "compute": 2,
    "run_folder": 3, "checkpoint": 3, "provenance": 3,
    "inference": 4,
    "evaluation": 5,
    "training": 6, "serving": 6, "reporting": 6,
    "api": 7,
    "experiments": 8,
    "cli": 9, "__init__": 9, "__main__": 9,
}  # fmt: skip


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def test_imports_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        part = relative.parts[1] if len(relative.parts) > 1 else "__init__"
        own = LAYERS[part.removesuffix(".py")]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == "facecheck" or not name.startswith("facecheck."):
                    continue
                target = _part(name)
                if LAYERS[target] > own:
                    upward.append(f"{relative}: imports {name} ({target} is above {part})")
    assert not upward, "\n".join(upward)


def test_every_part_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert parts - {"__pycache__", "static", "release"} <= set(LAYERS)


def test_one_decision_rule():
    """No code compares p_fake with a threshold but the card's decide (and the metrics and calibration, which
    count decisions over many scores)."""
    import re

    allowed = {"card.py", "evaluation/metrics.py", "evaluation/calibration.py"}
    comparison = re.compile(r"(p_fake|scores?)\b[^\n]*>=\s*[\w.\[\]\"']*threshold|>=\s*[\w.\[\]\"']*threshold")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in allowed:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if comparison.search(line.split("#")[0]):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
