"""Speed features keep behaviour: decode cache, frozen-backbone training, unfreezing, precision."""

from pathlib import Path

import pytest
import torch

from facecheck.checkpoint import build_model, read_checkpoint
from facecheck.compute import resolve_precision
from facecheck.config import PreprocessConfig
from facecheck.data import decode_cache
from facecheck.data.decode_cache import CachedImageDataset, decoded_images
from facecheck.data.discovery import discover
from facecheck.data.images import load_image
from facecheck.data.presets import eval_tensor_transform, eval_transform
from facecheck.errors import ConfigError
from facecheck.training import features as features_module
from facecheck.training.trainer import train

from .conftest import quick_config, write_face_set


def test_decode_cache_matches_the_uncached_pipeline_and_is_reused(tmp_path: Path, monkeypatch):
    records = discover(write_face_set(tmp_path / "d", per_class=3, size=80))
    config = PreprocessConfig(image_size=64)
    pixels = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    dataset = CachedImageDataset(pixels, [r.label for r in records], eval_tensor_transform(config))
    for index, record in enumerate(records):
        expected = eval_transform(config)(load_image(record.path))
        assert torch.allclose(dataset[index][0], expected, atol=1e-5)
        assert dataset[index][1] == record.label

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode_cache, "_decode", no_decoding)
    again = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    assert (again == pixels).all()
    with pytest.raises(AssertionError, match="decoded again"):
        decoded_images(records, PreprocessConfig(image_size=32), progress=False, root=tmp_path / "cache")
    with pytest.raises(AssertionError, match="decoded again"):
        decoded_images(records, PreprocessConfig(image_size=64, normalize_jpeg=90), root=tmp_path / "cache")


def test_decode_cache_notices_changed_files(tmp_path: Path):
    records = discover(write_face_set(tmp_path / "d", per_class=2, size=40))
    key = decode_cache.cache_key(records, PreprocessConfig(image_size=32))
    write_face_set(tmp_path / "d", per_class=2, size=48, seed=5)  # same names, new content
    assert decode_cache.cache_key(records, PreprocessConfig(image_size=32)) != key


def _frozen_config(data: Path, **extra):
    settings = {
        "freeze_backbone": True,
        "epochs": 3,
        "model": {"pretrained": False},
        "optim": {"lr": 0.01, "weight_decay": 0.0001, "step_size": 5, "gamma": 0.1},
    }
    return quick_config("seed-mobilenet", data, **(settings | extra))


def test_frozen_backbone_trains_only_the_head_and_caches_features(tmp_path: Path, monkeypatch):
    data = write_face_set(tmp_path / "d", per_class=10)
    config = _frozen_config(data)
    torch.manual_seed(config.seed)
    initial = build_model(config).state_dict()
    result = train(config, tmp_path / "run", quiet=True)
    assert [row["phase"] for row in result.history] == ["head"] * 3
    trained = read_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    backbone = [k for k in initial if k.startswith("backbone.")]
    head = [k for k in initial if k.startswith("head.")]
    assert all(torch.equal(initial[k], trained[k]) for k in backbone)  # BatchNorm statistics included
    assert not all(torch.equal(initial[k], trained[k]) for k in head)

    def no_extraction(*args, **kwargs):
        raise AssertionError("features computed again")

    monkeypatch.setattr(features_module, "extract_features", no_extraction)
    again = train(config, tmp_path / "run2", quiet=True)
    assert [row["train_loss"] for row in again.history] == pytest.approx([r["train_loss"] for r in result.history])


def test_unfreeze_fine_tunes_only_the_last_blocks(tmp_path: Path):
    data = write_face_set(tmp_path / "d", per_class=10)
    config = _frozen_config(data, epochs=1, unfreeze_blocks=2, unfreeze_epochs=1)
    torch.manual_seed(config.seed)
    initial = build_model(config).state_dict()
    result = train(config, tmp_path / "run", quiet=True)
    assert [row["phase"] for row in result.history] == ["head", "unfreeze"]
    trained = read_checkpoint(tmp_path / "run" / "last.pt")["state_dict"]
    # MobileNetV2 has 19 feature blocks: 17 and 18 are the last two.
    assert not torch.equal(initial["backbone.0.18.0.weight"], trained["backbone.0.18.0.weight"])
    assert not torch.equal(initial["backbone.0.17.conv.0.0.weight"], trained["backbone.0.17.conv.0.0.weight"])
    assert torch.equal(initial["backbone.0.16.conv.0.0.weight"], trained["backbone.0.16.conv.0.0.weight"])
    assert torch.equal(initial["backbone.0.0.1.running_mean"], trained["backbone.0.0.1.running_mean"])


def test_unfreeze_needs_a_frozen_phase(tmp_path: Path):
    config = quick_config("seed-cnn", tmp_path, unfreeze_blocks=1)
    with pytest.raises(ConfigError, match="needs freeze_backbone"):
        train(config, tmp_path / "run", quiet=True)


def test_precision_choices():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) in (None, torch.bfloat16)
    with pytest.raises(ConfigError, match="CUDA only"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision must be"):
        resolve_precision("int4", cpu)


def test_decode_cache_applies_jpeg_normalisation_like_the_pil_pipeline(tmp_path: Path):
    records = discover(write_face_set(tmp_path / "d", per_class=2, size=80))
    config = PreprocessConfig(image_size=64, normalize_jpeg=50)
    pixels = decoded_images(records, config, progress=False, root=tmp_path / "cache")
    dataset = CachedImageDataset(pixels, [r.label for r in records], eval_tensor_transform(config))
    expected = eval_transform(config)(load_image(records[0].path))
    assert torch.allclose(dataset[0][0], expected, atol=1e-5)
    plain = eval_transform(PreprocessConfig(image_size=64))(load_image(records[0].path))
    assert not torch.allclose(plain, expected, atol=1e-2)  # the re-encoding really happened
