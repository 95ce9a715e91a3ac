import json
import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image

from facecheck.card import ModelCard
from facecheck.checkpoint import build_model, card_for, load_model, read_checkpoint, save_checkpoint
from facecheck.errors import CheckpointError
from facecheck.inference.predictor import Detector

from .conftest import quick_config, write_face_set


@pytest.mark.parametrize("preset", ["seed-cnn", "seed-mobilenet"])
def test_save_load_gives_identical_predictions(tmp_path: Path, preset: str):
    config = quick_config(preset, None, model={"pretrained": False})
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "m.pt", model, card_for(config, epoch=3, metrics={"val_accuracy": 0.5}))
    loaded, card = load_model(tmp_path / "m.pt")
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))
    assert card.epoch == 3 and card.metrics == {"val_accuracy": 0.5}
    assert card.class_names == ("real", "fake")
    assert card.preprocess.image_size == 64
    assert set(card.versions) >= {"facecheck", "torch", "torchvision"}


def test_detector_predicts_same_as_model(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "m.pt", model, card_for(config, epoch=1, metrics={}))
    data = write_face_set(tmp_path / "d", per_class=2)
    detector = Detector.load(tmp_path / "m.pt")
    paths = sorted(data.rglob("*.png"))
    batch = torch.stack([detector.transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        expected = torch.softmax(model(batch), 1)[:, 1]
    got = [p.p_fake for p in detector.predict(paths)]
    assert got == pytest.approx(expected.tolist(), abs=1e-6)


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = quick_config("seed-cnn", None)
    model = build_model(config)
    target = tmp_path / "best.pt"
    save_checkpoint(target, model, card_for(config, epoch=1, metrics={}))
    before = target.read_bytes()

    def crash(payload, stream, *args, **kwargs):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(target, model, card_for(config, epoch=2, metrics={}))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_a_kill_during_the_write_finishes_the_file_then_interrupts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os
    import signal

    config = quick_config("seed-cnn", None)
    model = build_model(config)
    real_save = torch.save

    def killed_mid_write(payload, stream, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while torch.save writes (CI saw this as a RuntimeError)
        real_save(payload, stream, *args, **kwargs)

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)  # as the command line installs it
    monkeypatch.setattr(torch, "save", killed_mid_write)
    try:
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path / "last.pt", model, card_for(config, epoch=4, metrics={}))
        assert signal.getsignal(signal.SIGTERM) is raise_interrupt
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert read_checkpoint(tmp_path / "last.pt")["card"].epoch == 4
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_and_foreign_files_are_rejected(tmp_path: Path):
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable facecheck checkpoint"):
        read_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a facecheck checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="model not found"):
        read_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path)


def test_checkpoint_from_another_model_is_rejected(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config, epoch=1, metrics={}))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["card"]["model_name"] = "mobilenet_v2"
    torch.save(payload, tmp_path / "swapped.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "swapped.pt")
    payload["card"]["model_name"] = "no_such_model"
    torch.save(payload, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="unknown model"):
        load_model(tmp_path / "unknown.pt")


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(_Exploit.marker),))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_never_runs_code_from_the_file(tmp_path: Path):
    _Exploit.marker = str(tmp_path / "pwned")
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"format": "facecheck-checkpoint", "payload": _Exploit()}, handle)
    torch.save({"format": "facecheck-checkpoint", "x": _Exploit()}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(CheckpointError):
            read_checkpoint(tmp_path / name)
    assert not (tmp_path / "pwned").exists()


def test_card_round_trips_and_reads_format_1(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    card = card_for(config, epoch=2, metrics={"val_accuracy": 0.75}, threshold=0.4, uncertain_band=(0.3, 0.5))
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card
    assert again.decide(0.45) == "uncertain" and again.decide(0.55) == "fake" and again.decide(0.2) == "real"
    assert again.decide(0.45, threshold=0.6) == "real"  # another threshold drops the band fitted around 0.4
    # facecheck 0.1 checkpoints kept the card's fields at the top level; they still load
    legacy = {"format": "facecheck-checkpoint", "format_version": 1, "model_name": "seed_cnn",
              "model_kwargs": card.model_kwargs, "class_names": ["real", "fake"],
              "preprocess": card.to_dict()["preprocess"], "config": config.to_dict(), "epoch": 4, "metrics": {},
              "threshold": 0.5, "temperature": 2.0, "state_dict": build_model(config).state_dict(), "versions": {},
              "extra": {"calibration": {"x": 1}}}  # fmt: skip
    torch.save(legacy, tmp_path / "old.pt")
    _, old = load_model(tmp_path / "old.pt")
    assert old.epoch == 4 and old.temperature == 2.0 and old.notes == {"calibration": {"x": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": float("nan")}, "temperature must be finite"),
        ({"temperature": 0.0}, "temperature must be in"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"uncertain_band": [0.6, 0.9]}, "must contain the threshold"),
        ({"model_kwargs": {"image_size": 100000}}, "out of range"),
        ({"class_names": ["cat", "dog"]}, "class names"),
    ],
)
def test_crafted_cards_are_refused(tmp_path: Path, change: dict, message: str):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["card"].update(change)
    torch.save(payload, tmp_path / "crafted.pt")
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "crafted.pt")


def test_a_card_whose_network_and_preprocessing_disagree_on_the_input_size_is_refused(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["card"]["model_kwargs"]["image_size"] = 128  # preprocessing still hands it 64 px
    torch.save(payload, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="takes 128 px inputs but the preprocessing gives 64 px"):
        read_checkpoint(tmp_path / "odd.pt")


def test_oversized_network_is_refused_before_allocating(tmp_path: Path):
    config = quick_config("seed-cnn", None)
    save_checkpoint(tmp_path / "m.pt", build_model(config), card_for(config))
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["card"]["model_kwargs"]["image_size"] = 1024  # seed_cnn's fc1 would need billions of weights
    payload["card"]["preprocess"]["image_size"] = 1024  # (one input size: a mismatch is refused earlier)
    torch.save(payload, tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match="larger than any facecheck model"):
        load_model(tmp_path / "big.pt")
