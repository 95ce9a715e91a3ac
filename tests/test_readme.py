"""README.md's Python examples run as written, in a folder prepared the way the README describes."""

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from facecheck.data.synthetic import make_synthetic_dataset

from .test_video import write_video

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


@pytest.fixture
def readme_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """face.jpg, photos/, faces/ (labelled, synthetic) and clip.mp4, as the README's Python API section says."""
    faces = make_synthetic_dataset(tmp_path / "faces", per_class=10)
    Image.open(faces / "real" / "real_0000.png").convert("RGB").save(tmp_path / "face.jpg", quality=95)
    (tmp_path / "photos").mkdir()
    for name in ("real/real_0001.png", "fake/fake_0001.png", "fake/fake_0002.png"):
        shutil.copy(faces / name, tmp_path / "photos" / Path(name).name)
    write_video(tmp_path / "clip.mp4", frames=8)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_python_examples():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3 and any("facecheck.load()" in block for block in blocks)


def test_readme_python_examples_run_as_written(readme_folder: Path, capsys):
    namespace: dict = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(README.read_text(encoding="utf-8")), 1):
        # One namespace, in order, as a reader pasting them one after another would run them.
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "file not found: no-such-photo.jpg" in printed
    assert (readme_folder / "runs" / "quick" / "best.pt").is_file()
    assert len(namespace["both"]("photos/")) == 3


def test_the_readme_is_for_a_person_with_a_photo():
    """Set-up first, then checking a photo; reference material lives in docs/, linked from the README."""
    text = README.read_text(encoding="utf-8")
    assert text.splitlines()[3].startswith("make demo") and text.splitlines()[4].startswith("make test")
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0] == "Check a photo"
    for reference in ("Running on a cluster", "Presets", "Speed", "Layout"):
        assert reference not in headings, reference
    assert len(text.splitlines()) < 300
    assert "BEGIN shipped model" in text and "END shipped model" in text  # the place a new model's facts go


def test_every_relative_link_of_the_readme_and_docs_resolves():
    root = README.parent
    for document in [README, *sorted((root / "docs").glob("*.md"))]:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (document.parent / target).exists(), (document.name, target)
        for anchor in re.findall(r"\]\(#([^)]+)\)", text):
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}
            assert anchor in slugs, (document.name, anchor)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_check_a_photo_commands_run_as_written(readme_folder: Path, capsys):
    """The README's first commands, with its file names, on the shipped model (serve: tests/test_service_live.py)."""
    import shlex

    from facecheck.cli import main

    text = README.read_text(encoding="utf-8")
    block = re.search(r"^## Check a photo\n.*?^```\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL).group(1)
    shutil.copy(readme_folder / "face.jpg", readme_folder / "photo.jpg")
    shutil.copy(readme_folder / "photos" / "real_0001.png", readme_folder / "other.png")
    shutil.copytree(readme_folder / "photos", readme_folder / "folder")
    ran = 0
    for line in block.splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == ".venv/bin/facecheck", line
        if argv[1] == "serve":
            continue
        assert main(argv[1:]) == 0, (line, capsys.readouterr().err)
        ran += 1
    out = capsys.readouterr().out
    assert ran == 3 and "model: " in out and "Detects:" in out and (readme_folder / "why").is_dir()
