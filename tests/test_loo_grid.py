"""The leave-one-out grid's report: one row per recipe, held-out and in-domain figures where folds finished."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_grid():
    sys.path.insert(0, str(BENCHMARKS))  # loo_grid imports its sibling generalisation.py
    try:
        spec = importlib.util.spec_from_file_location("loo_grid", BENCHMARKS / "loo_grid.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_report_shows_finished_folds_and_a_mean_only_when_all_ran(tmp_path: Path):
    grid = load_grid()
    fold = {"held_out": {"roc_auc": 0.5564}, "in_domain": {"a": {"roc_auc": 0.9771, "roc_auc_jpeg50": 0.9587}}}
    rows = {
        "one-fold": {"what": "one fold", "preset": "p", "overrides": ["epochs=2"], "status": "finished",
                     "folds": {"c": fold}, "mean_held_out_roc_auc": 0.5564},
        "all-folds": {"what": "all", "preset": "p", "overrides": [], "status": "finished",
                      "folds": {"a": fold, "b": fold, "c": fold}, "mean_held_out_roc_auc": 0.5564},
    }  # fmt: skip
    grid.write_report(tmp_path, rows, ["a", "b", "c"], {"cores": 2}, plot=False)
    lines = (tmp_path / "grid.md").read_text().splitlines()
    one = next(line for line in lines if line.startswith("| one-fold |"))
    assert one.split(" | ")[1:5] == ["-", "-", "0.556", "-"]  # no mean from a single fold
    assert "a without c: 0.977 (0.959)" in one
    everything = next(line for line in lines if line.startswith("| all-folds |"))
    assert everything.split(" | ")[1:5] == ["0.556", "0.556", "0.556", "0.556"]
    assert "- `one-fold`: one fold (`p epochs=2`)" in lines and "- `all-folds`: all (`p`)" in lines
    assert json.loads((tmp_path / "grid.json").read_text())["recipes"]["one-fold"]["status"] == "finished"


def test_every_recipe_is_a_valid_config():
    from facecheck.config import get_preset, merge, parse_override, validate
    from facecheck.models.registry import with_model_defaults

    for name, (preset, overrides, _) in load_grid().RECIPES.items():
        config = get_preset(preset)
        for text in overrides:
            config = merge(config, parse_override(text))
        validate(with_model_defaults(config))  # raises ConfigError naming the bad setting
        assert config.preset == preset, name
