"""The Python API: a Detector is called like a function, takes folders, and raises on misuse."""

import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import facecheck
from facecheck import api
from facecheck.errors import FacecheckError, InputError, InputNotFoundError, InputTypeError
from facecheck.inference.ensemble import Ensemble
from facecheck.inference.predictor import Detector


@pytest.fixture(scope="module")
def detector(trained_run) -> Detector:
    return facecheck.load(trained_run[0])


def test_top_level_load_takes_exactly_what_api_load_takes():
    assert inspect.signature(facecheck.load) == inspect.signature(api.load)


def test_calling_a_detector_is_predict(detector: Detector, trained_run):
    image = sorted((trained_run[1] / "fake").glob("*.png"))[0]
    called, predicted = detector(image), detector.predict(image)
    assert len(called) == 1 and called[0].path == str(image)
    assert called[0].p_fake == predicted[0].p_fake and called[0].label == predicted[0].label


def test_a_folder_is_walked_like_the_cli_does(detector: Detector, trained_run, tmp_path: Path):
    folder = tmp_path / "photos"
    shutil.copytree(trained_run[1] / "real", folder / "nested")
    (folder / "notes.txt").write_text("not an image")
    files = sorted((folder / "nested").glob("*.png"))
    pixels = np.asarray(Image.open(files[0]).convert("RGB"))
    results = detector([folder, pixels])
    assert [r.path for r in results] == [*map(str, files), None]
    by_file = detector.predict(files)
    assert [r.p_fake for r in results[:-1]] == pytest.approx([r.p_fake for r in by_file], abs=1e-6)
    assert results[-1].p_fake == pytest.approx(by_file[0].p_fake, abs=1e-6)
    assert api.expand_inputs([folder]) == files


def test_a_broken_file_inside_a_folder_stays_a_result(detector: Detector, trained_run, tmp_path: Path):
    folder = tmp_path / "photos"
    shutil.copytree(trained_run[1] / "fake", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    results = detector(folder)
    broken = [r for r in results if r.path.endswith("broken.jpg")]
    assert len(broken) == 1 and broken[0].p_fake is None and "not a readable image" in broken[0].error
    assert all(r.error is None for r in results if r is not broken[0])


@pytest.mark.parametrize(
    ("make_input", "error", "builtin", "words"),
    [
        (lambda tmp: tmp / "missing.jpg", InputNotFoundError, FileNotFoundError, "file not found"),
        (lambda tmp: [tmp / "empty"], InputError, ValueError, "no images"),
        (lambda tmp: 42, InputTypeError, TypeError, "int"),
        (lambda tmp: [Image.new("RGB", (32, 32)), {"path": "x.jpg"}], InputTypeError, TypeError, "dict"),
        (lambda tmp: b"\xff\xd8 jpeg bytes", InputTypeError, TypeError, "bytes"),
        (lambda tmp: np.zeros((32, 32, 3), dtype=np.float32), InputError, ValueError, "uint8"),
    ],
    ids=["missing path", "empty folder", "number", "dict in a list", "raw bytes", "float array"],
)
def test_misuse_raises_a_clear_facecheck_error(detector, tmp_path: Path, make_input, error, builtin, words):
    (tmp_path / "empty").mkdir()
    with pytest.raises(error, match=words) as raised:
        detector.predict(make_input(tmp_path))
    assert isinstance(raised.value, builtin) and isinstance(raised.value, FacecheckError)


def test_an_ensemble_is_called_and_walks_folders_the_same_way(trained_run, tmp_path: Path):
    run, data = trained_run
    ensemble = Ensemble.load([run, run / "best.pt"])
    results = ensemble(data / "real")
    assert len(results) == len(list((data / "real").glob("*.png")))
    single = Detector.load(run).predict(data / "real")
    assert [r.p_fake for r in results] == pytest.approx([r.p_fake for r in single], abs=1e-6)
    with pytest.raises(InputNotFoundError):
        ensemble(tmp_path / "missing.png")
