"""Issue 29: nothing a user owns is lost or overwritten, and no request or file can exhaust the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecheck.cli import main
from facecheck.errors import ConfigError, DataError
from facecheck.paths import MARKER, cache_folder

from .conftest import write_face_set


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# 1. The cache owns only what it can prove it made.


def test_cache_clean_keeps_a_users_folder_named_like_a_cache_part(tmp_path: Path, capsys, monkeypatch):
    project = tmp_path / "project"
    write_face_set(project / "faces", per_class=2, size=16)  # the user's labelled set, named like the faces cache
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(project))
    made = cache_folder("decoded")
    (made / "x.u8").write_bytes(b"0" * 100)
    code, out, _ = run(capsys, "cache", "clean")
    assert code == 0
    assert len(list((project / "faces").rglob("*.png"))) == 4  # old code: rmtree'd the user's faces/
    assert not made.exists() and "kept" in out and str(project / "faces") in out


def test_cache_folder_refuses_to_write_into_a_folder_it_did_not_make(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(tmp_path))
    (tmp_path / "faces").mkdir()
    with pytest.raises(ConfigError, match="did not make it"):
        cache_folder("faces")
    assert (cache_folder("onnx") / MARKER).is_file()


def test_a_cache_folder_inside_the_data_folder_is_refused(tmp_path: Path, capsys, monkeypatch):
    data = write_face_set(tmp_path / "data", per_class=2, size=16)
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(data / "cache"))
    from facecheck.data.discovery import discover

    with pytest.raises(DataError, match="inside the data folder"):
        discover(data)
    code, _, err = run(capsys, "data", "inspect", str(data))
    assert code == 2 and "inside the data folder" in err
