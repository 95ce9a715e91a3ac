"""Issue 29: nothing a user owns is lost or overwritten, and no request or file can exhaust the machine."""

from __future__ import annotations

import json
from dataclasses import replace
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


def test_threads_that_make_the_same_cache_folder_at_once_all_get_it(tmp_path: Path):
    """Batches are prepared on every core: their first face detections ask for the faces folder together. A
    thread must never see the folder before its marker, which it would refuse as not facecheck's."""
    from concurrent.futures import ThreadPoolExecutor

    for attempt in range(20):
        root = tmp_path / str(attempt)
        with ThreadPoolExecutor(max_workers=8) as pool:
            made = list(pool.map(lambda _, root=root: cache_folder("faces", root), range(8)))
        assert set(made) == {root / "faces"} and (root / "faces" / MARKER).is_file()
        assert sorted(p.name for p in root.iterdir()) == ["faces"]  # no staging folder left


def test_a_cache_folder_inside_the_data_folder_is_refused(tmp_path: Path, capsys, monkeypatch):
    data = write_face_set(tmp_path / "data", per_class=2, size=16)
    monkeypatch.setenv("FACECHECK_CACHE_DIR", str(data / "cache"))
    from facecheck.data.discovery import discover

    with pytest.raises(DataError, match="inside the data folder"):
        discover(data)
    code, _, err = run(capsys, "data", "inspect", str(data))
    assert code == 2 and "inside the data folder" in err


# 3. No output overwrites an input or a file the user did not name; links are not followed.


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facecheck.checkpoint import build_model, card_for, save_checkpoint
    from facecheck.config import get_preset, merge

    config = merge(get_preset("seed-cnn"), {"preprocess": {"image_size": 64}})
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, build_model(config), card_for(config, epoch=1, metrics={}))
    return path


def test_explain_never_overwrites_a_file_or_follows_a_link(tmp_path: Path, capsys, small_model: Path):
    pytest.importorskip("captum")
    data = write_face_set(tmp_path / "d", per_class=1, size=48)
    image = data / "real" / "000.png"
    out = tmp_path / "cams"
    out.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (out / "000.gradcam.png").symlink_to(outside)  # a link where the overlay's name falls
    code, stdout, err = run(capsys, "explain", "--model", str(small_model), str(image), "--out", str(out), "--json")
    assert code == 0, err
    written = Path(json.loads(stdout)[0]["heatmap"])
    assert outside.read_text() == "keep me" and written.name == "000-2.gradcam.png" and written.is_file()
    # A second run keeps the first run's overlay and numbers its own.
    before = written.read_bytes()
    code, stdout, _ = run(capsys, "explain", "--model", str(small_model), str(image), "--out", str(out), "--json")
    assert code == 0 and written.read_bytes() == before
    assert Path(json.loads(stdout)[0]["heatmap"]).name == "000-3.gradcam.png"


def test_explain_into_the_input_folder_leaves_every_input_as_it_was(tmp_path: Path, capsys, small_model: Path):
    pytest.importorskip("captum")
    folder = tmp_path / "in"
    folder.mkdir()
    write_face_set(tmp_path / "d", per_class=1, size=48)
    (folder / "a.png").write_bytes((tmp_path / "d" / "real" / "000.png").read_bytes())
    (folder / "a.gradcam.png").write_bytes((tmp_path / "d" / "fake" / "000.png").read_bytes())  # also an input
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    code, stdout, err = run(capsys, "explain", "--model", str(small_model), str(folder), "--out", str(folder), "--json")
    assert code == 0, err
    assert all((folder / name).read_bytes() == content for name, content in before.items())
    written = {Path(entry["heatmap"]).name for entry in json.loads(stdout)}
    assert written.isdisjoint(before) and len(written) == 2


# 10. predict --out is checked before scoring; result files get the user's umask.


@pytest.mark.parametrize("case", ["under-a-file", "a-folder", "a-link"])
def test_predict_out_is_refused_before_any_scoring(tmp_path: Path, capsys, monkeypatch, small_model: Path, case):
    from facecheck.inference.predictor import Detector

    image = write_face_set(tmp_path / "d", per_class=1, size=48) / "real" / "000.png"
    (tmp_path / "dir.csv").mkdir()
    (tmp_path / "link.csv").symlink_to(tmp_path / "elsewhere.csv")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = {
        "under-a-file": tmp_path / "notes.txt" / "sub" / "p.csv",
        "a-folder": tmp_path / "dir.csv",
        "a-link": tmp_path / "link.csv",
    }
    scored = []
    monkeypatch.setattr(Detector, "predict", lambda self, *a, **k: scored.append(1) or [])
    code, _, err = run(capsys, "predict", "--model", str(small_model), str(image), "--out", str(out[case]))
    assert code == 2 and "--out" in err and scored == []  # old code: scored everything, then failed
    assert not (tmp_path / "elsewhere.csv").exists()


def test_result_files_are_created_with_the_users_umask(tmp_path: Path, capsys, small_model: Path):
    import os

    image = write_face_set(tmp_path / "d", per_class=1, size=48) / "real" / "000.png"
    old = os.umask(0o022)
    try:
        code, _, err = run(capsys, "predict", "--model", str(small_model), str(image), "--out", str(tmp_path / "p.csv"))
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o644  # old code: 0600 (mkstemp's)


def test_split_files_are_created_with_the_users_umask(tmp_path: Path):
    import os

    from facecheck.data.discovery import discover
    from facecheck.data.splits import make_split, write_split

    data = write_face_set(tmp_path / "d", per_class=4, size=16)
    old = os.umask(0o027)
    try:
        write_split(make_split(discover(data), 0.4, 0.0, seed=0), tmp_path / "split.csv", data)
    finally:
        os.umask(old)
    assert (tmp_path / "split.csv").stat().st_mode & 0o777 == 0o640  # old code: 0600 (mkstemp's)


# 5. Card and config values bounded by what they cost, checked before any allocation; NaN is never a verdict.


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocess": {"image_size": 60000}}, "preprocess.image_size must be a whole number from 32 to 1024"),
        ({"preprocess": {"std": [0.5, 0.0, 0.5]}}, "preprocess.std must be positive"),
        ({"preprocess": {"mean": [0.5, float("nan"), 0.5]}}, "preprocess.mean must be three finite numbers"),
        ({"batch_size": 4096, "preprocess": {"image_size": 1024}}, "batch_size 4096 at preprocess.image_size 1024"),
    ],
)
def test_config_values_that_cost_memory_or_truth_are_refused(change: dict, message: str):
    from facecheck.config import validate

    from .conftest import quick_config

    with pytest.raises(ConfigError, match=message):
        validate(quick_config("seed-cnn", None, **change))


def _crafted(tmp_path: Path, edit) -> Path:
    import torch

    from facecheck.checkpoint import build_model, card_for, save_checkpoint

    from .conftest import quick_config

    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    edit(payload)
    torch.save(payload, tmp_path / "crafted.pt")
    return tmp_path / "crafted.pt"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("std", [0.0, 0.0, 0.0], "std must be positive"), ("image_size", 4096, "image_size must be a whole number")],
)
def test_cards_that_cost_memory_or_truth_are_refused(tmp_path: Path, field: str, value, message: str):
    from facecheck.checkpoint import load_model
    from facecheck.errors import CheckpointError

    path = _crafted(tmp_path, lambda payload: payload["card"]["preprocess"].update({field: value}))
    with pytest.raises(CheckpointError, match=message):  # old code: std 0 gave p_fake=nan, verdict "real"
        load_model(path)


def test_a_nan_score_is_an_error_never_a_verdict(tmp_path: Path, capsys):
    import math

    def poison(payload) -> None:
        for name, tensor in payload["state_dict"].items():
            if tensor.is_floating_point() and name.endswith("weight"):
                tensor.fill_(math.nan)

    path = _crafted(tmp_path, poison)
    image = write_face_set(tmp_path / "d", per_class=1, size=48) / "real" / "000.png"
    code, out, _ = run(capsys, "predict", "--model", str(path), str(image), "--format", "json")
    row = json.loads(out)[0]
    assert "NaN" in row["error"] and row.get("label") is None and code == 1


def test_resume_refuses_an_edited_config_before_allocating(tmp_path: Path, capsys, trained_run):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(config.replace("image_size: 64", "image_size: 30000"))
    assert "image_size: 30000" in (run_dir / "config.yaml").read_text()
    code, _, err = run(capsys, "train", "--out", str(run_dir), "--resume", "--epochs", "2", "--quiet")
    assert code == 2 and "preprocess.image_size must be a whole number from 32 to 1024" in err


# 2. A run folder has one writer; launched workers die with their launcher.


def test_a_second_writer_on_a_run_folder_is_refused(tmp_path: Path, capsys):
    import socket

    from facecheck.errors import FacecheckError
    from facecheck.run_folder import RunFolder

    data = write_face_set(tmp_path / "d", per_class=4, size=32)
    run_dir = tmp_path / "run"
    held = RunFolder(run_dir).lock()  # as a first `train --out run` would hold it
    try:
        code, _, err = run(capsys, "train", "--data", str(data), "--out", str(run_dir), "--preset", "seed-cnn",
                           "--epochs", "1", "--quiet")  # fmt: skip
        assert code == 2 and "is in use by another training run" in err and socket.gethostname() in err
        assert sorted(p.name for p in run_dir.iterdir()) == [RunFolder.LOCK]  # the second wrote nothing
        with pytest.raises(FacecheckError, match=f"pid {__import__('os').getpid()}"):
            RunFolder(run_dir).lock()
    finally:
        held.release()
    assert not run_dir.exists()  # a folder made only for the lock goes with it
    RunFolder(run_dir).lock().release()  # free again


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path: Path):
    import subprocess
    import sys

    from facecheck.run_folder import RunFolder

    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / "config.yaml").write_text("x: 1\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from facecheck.run_folder import RunFolder; "
         f"RunFolder({str(run_dir)!r}).lock(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match=f"pid {holder.pid}"):
            RunFolder(run_dir).lock()
    finally:
        holder.kill()
        holder.wait()
    lock = RunFolder(run_dir).lock()  # the dead holder's lock file is stale: taken over
    assert (run_dir / RunFolder.LOCK).read_text().split()[0] == str(__import__("os").getpid())
    lock.release()
    assert (run_dir / "config.yaml").is_file()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_launched_worker_dies_with_its_launcher(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / "ready"
    worker = (
        "import os, pathlib, time; from facecheck.training.launch import die_with_parent; "
        f"die_with_parent(os.getppid()); pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         f"child = subprocess.Popen([sys.executable, '-c', {worker!r}]); print(child.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    child = int(launcher.stdout.readline())
    deadline = time.time() + 20
    while not ready.exists() and time.time() < deadline:  # the worker has set its death signal
        time.sleep(0.05)
    assert ready.exists()
    os.kill(launcher.pid, signal.SIGKILL)  # as `kill -9` of `train --nproc-per-node 2`
    launcher.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the worker outlived its launcher")


# 8. A run survives its data changing.


def _own_run(tmp_path: Path, **overrides):
    from .conftest import quick_config

    data = write_face_set(tmp_path / "data", per_class=8, size=32)
    return data, quick_config("seed-cnn", data, **overrides), tmp_path / "run"


def _split_of(run_dir: Path, data: Path) -> dict:
    from facecheck.run_folder import RunFolder

    return RunFolder(run_dir).read_split(data)


def test_a_test_image_removed_during_the_epochs_does_not_stop_the_summary(tmp_path: Path):
    from facecheck.training.trainer import train

    data, config, run_dir = _own_run(tmp_path)
    removed = []

    def remove_a_test_image(_row) -> None:
        path = _split_of(run_dir, data)["test"][0].path
        path.unlink()
        removed.append(str(path))

    result = train(config, run_dir, quiet=True, on_epoch=remove_a_test_image)
    assert (run_dir / "summary.json").is_file()  # old code: FileNotFoundError in the test phase, no summary
    assert removed[0] in (run_dir / "skipped.csv").read_text()
    assert result.test_metrics["n"] == len(_split_of(run_dir, data)["test"]) - 1


def test_a_training_image_truncated_mid_run_stops_with_one_line_and_resume_passes_it(tmp_path: Path):
    from facecheck.config import merge
    from facecheck.errors import DataError
    from facecheck.training.trainer import train

    data, config, run_dir = _own_run(tmp_path, epochs=2)
    config = merge(config, {"data": {"decode_cache": False}})  # images read each epoch, as from a large set
    truncated = []

    def truncate_a_training_image(row) -> None:
        if row["epoch"] == 1:
            path = _split_of(run_dir, data)["train"][0].path
            path.write_bytes(path.read_bytes()[:40])
            truncated.append(str(path))

    with pytest.raises(DataError, match=r"changed during the run.*--resume"):
        train(config, run_dir, quiet=True, on_epoch=truncate_a_training_image)
    result = train(config, run_dir, resume=True, quiet=True)  # old code: every resume failed on the file
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert truncated[0] in (run_dir / "skipped.csv").read_text()


def test_an_image_whose_content_is_replaced_is_left_out_not_trained_on(tmp_path: Path):
    import os

    from facecheck.training.trainer import train

    data, config, run_dir = _own_run(tmp_path)
    train(config, run_dir, quiet=True)
    path = _split_of(run_dir, data)["train"][0].path
    other = next(p for p in (data / "fake").iterdir() if p != path)
    path.write_bytes(other.read_bytes())  # another image under the same name
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    from facecheck.config import merge

    train(merge(config, {"epochs": 2}), run_dir, resume=True, quiet=True)
    assert f"{path},changed since the run began" in (run_dir / "skipped.csv").read_text()
    assert str(path) in (run_dir / "train.log").read_text()


def test_a_torn_last_line_of_metrics_does_not_block_resume(tmp_path: Path, trained_run):
    import shutil

    from facecheck.config import merge
    from facecheck.run_folder import RunFolder
    from facecheck.training.trainer import train

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "train_lo')  # a crash mid-append
    result = train(merge(RunFolder(run_dir).load_config(), {"epochs": 2}), run_dir, resume=True, quiet=True)
    assert [row["epoch"] for row in result.history] == [1, 2]


# 4. Every request has a pixel budget decided before decoding; the face detector runs on a bounded copy.


def _png(side: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_batch_past_its_pixel_budget_is_refused_before_decoding(monkeypatch, small_model: Path):
    from fastapi.testclient import TestClient

    import facecheck.serving.app as app_module
    from facecheck.inference.predictor import Detector
    from facecheck.serving.app import ServeSettings, create_app

    decoded = []
    real_decode = app_module.decode_upload
    monkeypatch.setattr(app_module, "decode_upload", lambda *args: decoded.append(1) or real_decode(*args))
    api = TestClient(create_app(Detector.load(small_model), ServeSettings(max_request_pixels=3_000_000)))
    big = _png(1000)  # 1,000,000 pixels each, a few kB compressed
    answer = api.post("/v1/predict/batch", files=[("files", (f"{i}.png", big)) for i in range(4)])
    assert answer.status_code == 413 and answer.json()["error"] == "too_many_pixels" and decoded == []
    answer = api.post("/v1/predict/batch", files=[("files", (f"{i}.png", big)) for i in range(2)])
    assert answer.status_code == 200 and len(decoded) == 2


def test_requests_in_flight_share_one_pixel_budget(small_model: Path):
    from facecheck.inference.predictor import Detector
    from facecheck.serving.app import ServeSettings, Service
    from facecheck.serving.errors import ApiError
    from facecheck.serving.middleware import ServiceMetrics

    settings = ServeSettings(max_request_pixels=2_000_000, max_pixels_in_flight=2_500_000)
    service = Service(Detector.load(small_model), settings, ServiceMetrics())
    try:
        with service.pixel_budget([_png(1000), _png(1000)]):  # 2,000,000 held by a first request
            with pytest.raises(ApiError) as refused, service.pixel_budget([_png(1000)]):
                pass
            assert refused.value.status == 503
        with service.pixel_budget([_png(1000)]):  # released: there is room again
            assert service.pixels_in_flight == 1_000_000
    finally:
        service.close()


def test_the_face_detector_runs_on_a_bounded_copy_and_maps_boxes_back(monkeypatch):
    import numpy as np
    from PIL import Image

    from facecheck.data import faces

    seen = []

    class FakeMTCNN:
        def detect(self, images):  # a batch of same-size pictures, as facenet's MTCNN takes them
            seen.extend(image.size for image in images)
            return [np.array([[100.0, 50.0, 200.0, 150.0]])] * len(images), [np.array([0.99])] * len(images)

    monkeypatch.setattr(faces, "_get_detector", lambda fast=False: FakeMTCNN())
    found = faces.detect_faces(Image.new("RGB", (4096, 2048)), use_cache=False)
    assert seen == [(1024, 512)]  # old code: the full 4096x2048 image
    assert found[0].box == pytest.approx((400.0, 200.0, 800.0, 600.0))


def test_a_slow_client_cannot_hold_up_shutdown(small_model: Path):
    import socket
    import time

    from .conftest import start_live_server

    base, stop = start_live_server(small_model, shutdown_timeout_s=1.0, body_timeout_s=60.0)
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        # A request head announcing a body that never comes: the handler waits for it.
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\n")  # fmt: skip
        time.sleep(0.5)
        started = time.perf_counter()
        stop()
        took = time.perf_counter() - started
    finally:
        sock.close()
    assert took < 5  # old code: held until the body deadline (60 s here; stop() gives up after 10)


# 6. A full disk ends with one line naming the file and the fix, and leaves nothing behind.


def test_a_full_disk_under_the_decode_cache_is_one_clear_error(tmp_path: Path, monkeypatch):
    import errno
    import os

    from facecheck.config import get_preset
    from facecheck.data import decode_cache
    from facecheck.data.discovery import discover
    from facecheck.errors import DiskFullError

    records = discover(write_face_set(tmp_path / "d", per_class=2, size=32))
    pre = replace(get_preset("seed-cnn").preprocess, image_size=32)

    def full(handle, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)  # old code: no reservation, a SIGBUS mid-build
    with pytest.raises(DiskFullError, match=r"no space left on the device for .*\.u8 .*decode_cache=false"):
        decode_cache.decoded_images(records, pre, progress=False, root=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir()] == [MARKER]  # no temporary file left


def test_a_dead_builds_temporary_file_is_removed(tmp_path: Path):
    import socket
    import subprocess
    import sys

    from facecheck.config import get_preset
    from facecheck.data import decode_cache
    from facecheck.data.discovery import discover

    records = discover(write_face_set(tmp_path / "d", per_class=2, size=32))
    pre = replace(get_preset("seed-cnn").preprocess, image_size=32)
    folder = cache_folder("decoded", tmp_path / "cache")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    key = decode_cache.cache_key(records, pre)
    stale = folder / f".{key}.{socket.gethostname().replace('.', '_')}-{dead.stdout.strip()}.abc"
    stale.write_bytes(b"0" * 1000)  # as a build killed by SIGBUS or SIGKILL left it
    decode_cache.decoded_images(records, pre, progress=False, root=tmp_path / "cache")
    assert not stale.exists()


def test_a_full_disk_during_a_checkpoint_write_says_so_and_keeps_the_old_file(tmp_path: Path, monkeypatch):
    import os

    import torch

    from facecheck.checkpoint import atomic_torch_save
    from facecheck.errors import DiskFullError

    path = tmp_path / "last.pt"
    path.write_bytes(b"the earlier checkpoint")

    def failing_save(payload, stream) -> None:
        stream.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(os, "statvfs", lambda _path: Full())
    with pytest.raises(DiskFullError, match=r"no space left on the device for .*last\.pt"):
        atomic_torch_save({"x": 1}, path)  # old code: the RuntimeError, which does not say the disk is full
    assert path.read_bytes() == b"the earlier checkpoint" and sorted(os.listdir(tmp_path)) == ["last.pt"]


# 7. One bad shard sample is left out with a warning naming it; tar members are size-checked before reading.


def _shard(path: Path, samples: list[tuple[str, bytes, bytes]]) -> Path:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for key, image, label in samples:
            for field, content in (("png", image), ("cls", label)):
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def test_a_sample_with_a_bad_label_is_skipped_with_a_warning_naming_it(tmp_path: Path):
    pytest.importorskip("webdataset")
    from facecheck.data.shards import ShardStream, ShardWarning

    good = _png(40)
    shard = _shard(tmp_path / "train-000000.tar", [("a", good, b"0"), ("b", good, b"7"), ("c", good, b"1")])
    with pytest.warns(ShardWarning, match=r"train-000000\.tar#b: label b'7'"):
        labels = [label for _, label in ShardStream([str(shard)], lambda image: image)]
    assert labels == [0, 1]  # old code: IndexError naming no sample, the run ended


def test_a_truncated_shard_ends_that_shard_not_the_run(tmp_path: Path):
    pytest.importorskip("webdataset")
    from facecheck.data.shards import ShardStream, ShardWarning

    image = _png(40)
    first = _shard(tmp_path / "train-000000.tar", [(f"k{i}", image, b"1") for i in range(3)])
    cut = first.read_bytes()
    first.write_bytes(cut[: len(cut) // 2 + 100])  # a copy interrupted halfway
    second = _shard(tmp_path / "train-000001.tar", [("z", image, b"0")])
    with pytest.warns(ShardWarning, match=r"train-000000\.tar: shard is truncated or corrupt"):
        labels = [label for _, label in ShardStream([str(first), str(second)], lambda image: image)]
    assert labels[-1] == 0 and len(labels) < 4  # the second shard still read; old code: the run exited 1


def test_a_huge_tar_member_is_skipped_unread(tmp_path: Path, monkeypatch):
    pytest.importorskip("webdataset")
    import tarfile

    from facecheck.data import shards
    from facecheck.data.shards import ShardStream, ShardWarning

    big, small = _png(200), _png(40)
    shard = _shard(tmp_path / "train-000000.tar", [("big", big, b"1"), ("ok", small, b"0")])
    monkeypatch.setattr(shards, "MAX_MEMBER_BYTES", len(big) - 1)
    read = []
    real_extract = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: read.append(m.name) or real_extract(self, m))
    with pytest.warns(ShardWarning, match="big.png of .* bytes skipped unread"):
        labels = [label for _, label in ShardStream([str(shard)], lambda image: image)]
    assert labels == [0] and "big.png" not in read  # old code: every member read whole into memory


# 9. Ray output: a folder of its own, checked first; SIGTERM says "interrupted"; SIGKILL leaves no Ray helpers.


def test_ray_refuses_an_output_folder_holding_other_files_before_any_work(tmp_path: Path, capsys, monkeypatch):
    pytest.importorskip("ray")
    from facecheck.inference import ray_scoring

    image = write_face_set(tmp_path / "d", per_class=1, size=32) / "real" / "000.png"
    out = tmp_path / "scores"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    loaded = []
    monkeypatch.setattr(ray_scoring, "scoring_job", lambda *a, **k: loaded.append(1))
    code, _, err = run(capsys, "predict", "--engine", "ray", str(image), "--out", str(out))
    assert code == 2 and "already holds other files (notes.txt)" in err and loaded == []  # old code: accepted
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_ray_processes_are_reaped_when_the_driver_is_killed(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys
    import time

    driver = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "from facecheck.inference.ray_scoring import reap_when_gone; "
         "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], stdout=subprocess.DEVNULL); "
         "reap_when_gone([helper.pid]); print(helper.pid, flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = driver.stdout.readline()
    assert line.strip().isdigit(), "the driver did not start its helper"  # old code: no reap_when_gone
    helper = int(line)
    os.kill(driver.pid, signal.SIGKILL)  # as `kill -9` of `predict --engine ray`
    driver.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(helper, 0)
            with open(f"/proc/{helper}/stat") as stat:  # a zombie awaiting its (dead) parent's reaping is gone
                if stat.read().split(") ")[1].startswith("Z"):
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    else:
        os.kill(helper, signal.SIGKILL)
        pytest.fail("a helper outlived the killed driver")


@pytest.mark.slow
def test_starting_ray_keeps_the_clis_sigterm_handler():
    ray = pytest.importorskip("ray")
    import signal

    from facecheck.cli import _raise_interrupt
    from facecheck.inference.ray_scoring import release_reaper, start_ray

    if ray.is_initialized():
        pytest.skip("Ray already runs in this process")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # as the CLI installs it
    try:
        assert start_ray(num_cpus=1)
        assert signal.getsignal(signal.SIGTERM) is _raise_interrupt  # old code: Ray's, which aborts (exit 134)
    finally:
        ray.shutdown()
        release_reaper()
        signal.signal(signal.SIGTERM, previous)
