"""Everyday command-line behaviour: closed pipes, defaults in --help, printing a preset's settings."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from facecheck.cli import build_parser, main
from facecheck.config import PRESETS, get_preset

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    yield prefix or "facecheck", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, f"{prefix} {name}".strip())


def test_every_default_is_shown_in_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping inside values
    checked = 0
    for name, parser in _subparsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                shown = (f"default: {action.default}", f"default {action.default}")
                assert any(s in text for s in shown), (name, action.dest, action.default)
                checked += 1
    assert checked > 30


def test_predict_help_shows_batch_size_default(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "(default: 32)" in " ".join(capsys.readouterr().out.split())


def test_closed_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) is gone before anything is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "facecheck", "presets", "--show", "seed-cnn"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 141


def test_broken_pipe_inside_a_command_is_quiet(monkeypatch, capsys):
    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["presets"]) == 141
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_show_prints_the_full_settings(capsys, name):
    assert main(["presets", "--show", name]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == get_preset(name).to_dict()


def test_train_print_config_applies_overrides_without_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["train", "--preset", "seed-cnn", "--epochs", "3", "--set", "optim.lr=0.01", "--print-config"])
    assert code == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["preset"] == "seed-cnn" and shown["epochs"] == 3 and shown["optim"]["lr"] == 0.01
    assert not (tmp_path / "runs").exists()


def test_presets_lists_names(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert {line.split()[0] for line in lines} == set(PRESETS)
    assert any("(recommended)" in line for line in lines) and any("(general" in line for line in lines)
