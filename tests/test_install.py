"""Packaging: optional extras name themselves when missing, the licence and version are declared."""

import re
import sys
import tomllib
from pathlib import Path

import pytest

from facecheck import __version__
from facecheck.cli import main
from facecheck.extras import DISTRIBUTIONS, EXTRA_MODULES, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_extra_in_code_is_declared_with_its_packages():
    declared = PYPROJECT["project"]["optional-dependencies"]
    for extra, modules in EXTRA_MODULES.items():
        assert extra in declared, extra
        for module in modules:
            assert DISTRIBUTIONS.get(module, module).lower() in _names(declared[extra]), (extra, module)
    assert set(declared) - {"all", "dev"} == set(EXTRA_MODULES)
    assert declared["all"] == [f"facecheck[{','.join(EXTRA_MODULES)}]"]


def test_license_is_an_spdx_expression_with_its_file():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # SPDX license strings need setuptools 77 or later (older ones refuse the project table).
    assert "setuptools>=77" in PYPROJECT["build-system"]["requires"]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"facecheck {__version__}"


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"captum, not installed: pip install 'facecheck\[explain\]'"):
        require("captum", "explain")
    assert require("json", "explain") is sys.modules["json"]


@pytest.mark.parametrize(
    ("missing", "argv", "extra"),
    [
        ("fastapi", ["serve", "--model", "no-such-run"], "serve"),
        ("onnx", ["export", "--model", "no-such-run", "--out", "m.onnx"], "export"),
        ("captum", ["explain", "--model", "no-such-run", "--out", "cams", "x.png"], "explain"),
        ("matplotlib", ["evaluate", "--model", "no-such-run", "--report", "r.html"], "report"),
        ("matplotlib", ["data", "inspect", "no-such-dir", "--report", "r.html"], "report"),
        ("optuna", ["tune", "--data", "d", "--out", "o"], "tune"),
        ("ray", ["predict", "--engine", "ray", "x.png", "--out", "scores.parquet"], "distributed"),
    ],
)
def test_missing_extra_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, missing, argv, extra):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, missing, None)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and f"pip install 'facecheck[{extra}]'" in err, err


def test_an_optional_import_deep_inside_a_command_still_names_its_extra(monkeypatch, capsys):
    import facecheck.cli as cli

    def needs_av(args):
        import av  # noqa: F401

    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(cli.COMMANDS, "models", needs_av)
    assert main(["models"]) == 2
    assert "pip install 'facecheck[video]'" in capsys.readouterr().err
