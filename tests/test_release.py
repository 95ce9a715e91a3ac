"""The shipped model: release files round-trip, tampering is refused, the packaged model scores as its card says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facecheck.checkpoint import build_model, card_for, save_checkpoint
from facecheck.errors import CheckpointError
from facecheck.inference import release as release_module
from facecheck.inference.predictor import Detector
from tests.conftest import SHARED_DATA, quick_config, write_face_set


def _release(tmp_path: Path, preset: str = "seed-cnn") -> tuple[Path, object]:
    config = quick_config(preset, None, preprocess={"image_size": 32}, model={"pretrained": False})
    torch.manual_seed(0)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "m.pt", model, card_for(config, threshold=0.4, uncertain_band=(0.35, 0.45)))
    folder = tmp_path / "release"
    release_module.write_release(tmp_path / "m.pt", "tiny-v1", folder, scope={"summary": "a test model"})
    return folder, model


@pytest.mark.parametrize("preset", ["seed-cnn", "general-sbi-lite0"])
def test_release_round_trips_in_float16(tmp_path: Path, preset: str):
    # EfficientNet-Lite registers its Grad-CAM layer twice and keeps channels-last weights: both must be stored
    folder, model = _release(tmp_path, preset)
    loaded, card = release_module.load_release("tiny-v1", folder)
    assert card.scope["summary"] == "a test model" and card.uncertain_band == (0.35, 0.45)
    batch = torch.randn(4, 3, 32, 32)
    assert release_module.float16_copy_agrees(loaded, model, batch) < 1e-2
    assert all(p.dtype == torch.float32 for p in loaded.parameters())  # computed in float32


def test_tampered_release_is_refused(tmp_path: Path):
    folder, _ = _release(tmp_path)
    weights = folder / "tiny-v1.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="sha256"):
        release_module.load_release("tiny-v1", folder)
    with pytest.raises(CheckpointError, match="no shipped model 'other'"):
        release_module.release("other", folder)


def test_detector_without_a_path_uses_the_shipped_model(tmp_path: Path, monkeypatch):
    folder, _ = _release(tmp_path)
    monkeypatch.setattr(release_module, "RELEASE_DIR", folder)
    monkeypatch.setattr(release_module, "DEFAULT_MODEL", "tiny-v1")
    monkeypatch.setattr(release_module.load_release, "__defaults__", ("tiny-v1", folder))
    monkeypatch.setattr(release_module.release, "__defaults__", ("tiny-v1", folder))
    detector = Detector.load(None, face_check=False)
    images = sorted(write_face_set(tmp_path / "d", per_class=2, size=32).rglob("*.png"))
    labels = {p.label for p in detector.predict(images)}
    assert labels <= {"real", "fake", "uncertain"} and "tiny-v1" in detector.source


SHIPPED = release_module.releases()


@pytest.mark.skipif(not SHIPPED, reason="no model ships in this checkout (facecheck/release/manifest.json absent)")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_matches_its_hash_and_loads(name: str):
    entry = release_module.release(name)
    assert entry.weights.stat().st_size <= 10 * 1024 * 1024
    _model, card = release_module.load_release(name)
    assert card.scope.get("face_check") is True and card.uncertain_band is not None
    assert card.scope["measured"]  # the card carries its measured numbers


@pytest.mark.skipif(not SHIPPED, reason="no model ships in this checkout")
def test_the_default_is_the_newest_release_and_the_others_load_by_name():
    assert max(SHIPPED) == release_module.DEFAULT_MODEL  # facecheck-general-v2 after v1
    assert Detector.load(None, face_check=False).source.endswith(release_module.DEFAULT_MODEL)
    for name in SHIPPED:
        assert Detector.load(name, face_check=False).card.scope["summary"]


@pytest.mark.shared_data
@pytest.mark.skipif(not SHIPPED, reason="no model ships in this checkout")
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is absent")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_scores_shared_images_as_its_card_says(name: str):
    """The card's canaries: held-out shared images and the scores the shipped file gave them (every release:
    a change of the code that reads or runs the model must not move them)."""
    detector = Detector.load(name, face_check=False)
    canaries = json.loads(release_module.release(name).card.read_text())["scope"]["canaries"]
    assert len(canaries) >= 6
    scores = detector.predict([SHARED_DATA / c["path"] for c in canaries])
    for canary, prediction in zip(canaries, scores, strict=True):
        assert prediction.p_fake == pytest.approx(canary["p_fake"], abs=1e-3), canary["path"]


def test_the_default_cards_engine_entry_follows_its_own_precision_measurements():
    """The card says which engine and precision are the default, and a lower precision is the default only
    where its measured changes stay inside the tolerance it names and it is measurably faster
    (benchmarks/precision_holds.py)."""
    card = json.loads(release_module.release(release_module.DEFAULT_MODEL).card.read_text())
    engines = card["scope"]["measured"]["engines"]
    tolerance = engines["tolerance"]
    for key in ("int8", "bf16", "bf16_checked"):
        within = (
            engines[f"{key}_largest_roc_auc_change"] <= tolerance["roc_auc"]
            and engines[f"{key}_largest_verdicts_changed"] <= tolerance["verdicts_changed"]
        )
        assert engines[f"{key}_holds"] is within, key
        if engines[f"{key}_default"]:
            assert within and engines[f"{key}_network_speedup"] >= 1.1, key
    assert engines["int8_default"] is False  # no int8 engine is loaded by default: it would have to hold first
    assert not (engines["bf16_default"] and engines["bf16_checked_default"])
    default = "bf16-checked" if engines["bf16_checked_default"] else "bf16" if engines["bf16_default"] else "float32"
    assert engines["default"].startswith(default)
    # And the loader reads the same entry: auto picks a bf16 precision only where the card says it is the default.
    from facecheck.inference.predictor import card_default_precisions

    holds = card_default_precisions(release_module.load_release()[1])
    assert ("bf16" in holds) is engines["bf16_default"]
    assert ("bf16-checked" in holds) is engines["bf16_checked_default"]


def _release_script():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "release_model.py"
    spec = importlib.util.spec_from_file_location("release_model_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fold_tables_enter_the_card_with_each_folds_epochs(tmp_path: Path):
    """Leave-one-out folds often run shorter than the release's recipe: the card says how long each trained."""
    script = _release_script()
    loo = tmp_path / "loo"
    (loo / "without-a").mkdir(parents=True)
    (loo / "without-a" / "config.yaml").write_text("epochs: 2\nlr: 0.001\n")
    (loo / "leave-one-out.json").write_text(json.dumps({
        "folds": {"a": {"held_out": {"roc_auc": 0.61, "n": 10}}, "b": {"held_out": {"roc_auc": 0.7, "n": 4}}},
        "mean_held_out_roc_auc": 0.655,
    }))  # fmt: skip
    entries = script.left_out_entries(loo / "leave-one-out.json")
    assert entries["left_out[a]"] == {"roc_auc": 0.61, "n": 10, "epochs": 2}
    assert entries["left_out[b]"]["epochs"] is None  # no run folder to read: said, not guessed
    assert entries["left_out_mean_roc_auc"] == 0.655
    assert "(2/None epochs)" in entries["left_out_protocol"]
    logo = tmp_path / "logo"
    (logo / "without-sdxl").mkdir(parents=True)
    (logo / "without-sdxl" / "config.yaml").write_text("epochs: 4\n")
    (logo / "leave-one-generator-out.json").write_text(
        json.dumps({"source": "portraits", "folds": {"sdxl": {"roc_auc": 0.8, "caught": 0.3}}})
    )
    entries = script.generator_left_out_entries([logo / "leave-one-generator-out.json"])
    assert entries["generator_left_out[portraits/sdxl]"] == {"roc_auc": 0.8, "caught": 0.3, "epochs": 4}
    assert "--leave-one-generator-out portraits" in entries["generator_left_out_protocol"]


def test_the_default_card_carries_its_leave_one_out_tables():
    """The shipped card answers issue 24's protocols: every source left out in turn, and each diffusion
    generator left out in turn, each fold with the epochs it trained (shorter than the release's recipe)."""
    card = json.loads(release_module.release(release_module.DEFAULT_MODEL).card.read_text())
    measured = card["scope"]["measured"]
    sources = ["ffhq-stylegan", "lfw-faceswap", "dfdc-faces", "diffusion-portraits", "inswapper-faces"]
    folds = [measured[f"left_out[{source}]"] for source in sources]
    assert all(0 <= fold["roc_auc"] <= 1 and fold["n"] > 0 and fold["epochs"] >= 1 for fold in folds)
    mean = sum(fold["roc_auc"] for fold in folds) / len(folds)
    assert measured["left_out_mean_roc_auc"] == pytest.approx(mean)
    for generator in ("sd15", "sd14", "sdxl", "midjourney"):
        fold = measured[f"generator_left_out[diffusion-portraits/{generator}]"]
        assert 0 <= fold["roc_auc"] <= 1 and fold["n_fake"] > 0 and fold["n_real"] > 0 and fold["epochs"] >= 1
