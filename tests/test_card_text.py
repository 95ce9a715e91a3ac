"""The card a user reads: one text, rounded numbers and the weights' digest, the same in the CLI and the API;
one load_card for every kind of model file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facecheck.card import render_card
from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.cli import main
from facecheck.errors import CheckpointError
from facecheck.inference import release as release_module
from facecheck.inference.cards import load_card
from facecheck.inference.predictor import Detector
from facecheck.serving.app import ServeSettings, create_app
from tests.conftest import quick_config


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    config = quick_config("seed-cnn", None, preprocess={"image_size": 32})
    measured = {"in_domain[a]": {"roc_auc": 0.912345678, "n": 10, "by_generator": {"sd": {"called_fake": 0.5}}}}
    card = card_for(config, threshold=0.4123456, uncertain_band=(0.3512345, 0.4567891),
                    scope={"summary": "a test model", "measured": measured})  # fmt: skip
    save_checkpoint(tmp_path / "m.pt", build_model(config), card)
    return tmp_path / "m.pt"


def test_card_text_rounds_numbers_and_names_the_weights(checkpoint: Path):
    card = load_card(checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    text = render_card(card, "tiny", digest)
    assert "p_fake >= 0.412, uncertain in 0.351-0.457" in text and f"Weights sha256: {digest}" in text
    assert "roc_auc 0.912" in text and "0.912345678" not in text
    assert "by_generator sd: called_fake 0.500" in text


def test_the_api_shows_the_same_card_text_as_the_cli(checkpoint: Path, tmp_path: Path, monkeypatch, capsys):
    detector = Detector.load(checkpoint)
    body = TestClient(create_app(detector, ServeSettings())).get("/v1/model").json()
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert body["weights_sha256"] == digest and body["card_text"] == render_card(detector.card, "seed-cnn", digest)
    # The CLI renders a shipped model's card with the same function, digest from the release manifest.
    folder = tmp_path / "release"
    entry = release_module.write_release(checkpoint, "tiny-v1", folder, scope={"summary": "a test model"})
    monkeypatch.setattr(release_module, "RELEASE_DIR", folder)
    monkeypatch.setattr(release_module.releases, "__defaults__", (folder,))
    assert main(["models", "--card", "tiny-v1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == render_card(release_module.read_release_card(entry), "tiny-v1", entry.weights_sha256)
    assert f"Weights sha256: {entry.weights_sha256}" in printed


def test_load_card_reads_runs_checkpoints_and_shipped_names(checkpoint: Path, tmp_path: Path, monkeypatch):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pt").write_bytes(checkpoint.read_bytes())
    assert load_card(tmp_path / "run").threshold == pytest.approx(0.4123456)  # a run folder: its best.pt
    folder = tmp_path / "release"
    release_module.write_release(checkpoint, "tiny-v1", folder, scope={"summary": "shipped"})
    monkeypatch.setattr(release_module, "RELEASE_DIR", folder)
    monkeypatch.setattr(release_module.releases, "__defaults__", (folder,))
    monkeypatch.setattr(release_module.release, "__defaults__", ("tiny-v1", folder))
    assert load_card("tiny-v1").scope["summary"] == "shipped"
    with pytest.raises(CheckpointError):
        load_card(tmp_path / "nothing-here.pt")
    json.dumps(load_card(checkpoint).to_dict())
