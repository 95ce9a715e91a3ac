"""Every bad input a user can give the CLI ends in one line on stderr and a documented exit code (2)."""

import socket
from pathlib import Path

import pytest

from facecheck.cli import EXIT_USAGE, main

BAD_INPUTS = [
    [],
    ["no-such-command"],
    ["predict"],
    ["predict", "x.jpg", "--threshold", "1.5"],
    ["predict", "x.jpg", "--threshold", "half"],
    ["predict", "no-such-photo.jpg"],
    ["predict", "no-such-photo.jpg", "--out", "results.txt"],
    ["predict", "x.jpg", "--format", "xml"],
    ["evaluate", "--model", "no-such-run"],
    ["evaluate", "--perturb", "sharpen:2"],
    ["train", "--epochs", "many"],
    ["train", "--preset", "no-such-preset"],
    ["train", "--resume"],
    ["train", "--set", "optim.nonsense=1", "--print-config"],
    ["serve", "--port", "99999"],
    ["serve", "--port", "eighty"],
    ["serve", "--host", "999.1.1.1"],
    ["explain", "--out", "cams", "no-such-photo.jpg"],
    ["export", "--model", "no-such-run", "--out", "m.onnx"],
    ["data", "inspect", "no-such-folder"],
    ["data", "crop", "no-such-folder"],
    ["data", "synthetic", "--per-class", "1"],
    ["models", "--card", "no-such-model"],
    ["presets", "--show", "no-such-preset"],
    ["cache", "clean", "--only", "everything"],
    ["explain", "x.png", "--out", "o", "--no-such-option"],
    ["data", "crop", "d", "--out", "o", "--no-such-option"],
]


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse stops with SystemExit, the commands return their code
        code = exited.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv", BAD_INPUTS, ids=lambda argv: " ".join(argv) or "nothing")
def test_bad_input_is_one_line_and_exit_2(monkeypatch, tmp_path: Path, capsys, argv: list[str]):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, argv)
    assert code == EXIT_USAGE, err
    # Progress lines ("loading the model ...") may come first; the error is the last line, and one line.
    *before, last = err.splitlines()
    assert last.startswith("facecheck: error: ") and err.endswith("\n"), err
    assert not any(line.startswith("facecheck: error") for line in before), err
    assert "usage:" not in err and "Traceback" not in err and len(before) <= 1, err


def test_argparse_errors_name_the_command_and_its_help(capsys):
    code, err = _run(capsys, ["predict", "x.jpg", "--threshold", "1.5"])
    assert code == 2
    assert (
        err
        == "facecheck: error: predict: argument --threshold: 1.5 is outside [0, 1] (see: facecheck predict --help)\n"
    )


def test_an_unknown_option_names_the_command_it_was_given_to(capsys):
    code, err = _run(capsys, ["data", "crop", "d", "--out", "o", "--bogus"])
    assert code == 2
    assert err == "facecheck: error: data crop: unrecognized arguments: --bogus (see: facecheck data crop --help)\n"


def test_a_port_in_use_is_refused_before_the_model_loads(monkeypatch, capsys):
    pytest.importorskip("fastapi")
    import facecheck.api

    def must_not_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(facecheck.api, "load", must_not_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _run(capsys, ["serve", "--port", str(port)])
    assert code == 2 and err.count("\n") == 1, err
    assert f"cannot listen on http://127.0.0.1:{port}/" in err and "choose another --port" in err
