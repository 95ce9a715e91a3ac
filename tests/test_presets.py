"""Input pipelines: JPEG normalisation removes compression differences; augmentations behave."""

import io

import numpy as np
import torch
from PIL import Image, ImageFilter

from facecheck.config import PreprocessConfig
from facecheck.data.presets import NormalizeJpeg, eval_transform, train_tensor_transform, train_transform


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_normalize_jpeg_brings_two_qualities_together():
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(1))
    low, high = _jpeg(source, 60), _jpeg(source, 98)
    raw_gap = np.abs(np.asarray(low, float) - np.asarray(high, float)).mean()
    normalise = NormalizeJpeg(50)
    normalised_gap = np.abs(np.asarray(normalise(low), float) - np.asarray(normalise(high), float)).mean()
    assert normalised_gap < raw_gap


def test_eval_transform_is_deterministic_and_train_is_random():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), dtype=np.uint8))
    config = PreprocessConfig(image_size=64, augment="robust", normalize_jpeg=90)
    assert torch.equal(eval_transform(config)(image), eval_transform(config)(image))
    torch.manual_seed(0)
    outputs = [train_transform(config)(image) for _ in range(4)]
    assert outputs[0].shape == (3, 64, 64)
    assert any(not torch.equal(outputs[0], other) for other in outputs[1:])


def test_no_augmentation_means_train_equals_eval():
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    config = PreprocessConfig(image_size=64, augment="none")
    assert torch.equal(train_transform(config)(image), eval_transform(config)(image))
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
    assert torch.allclose(train_tensor_transform(config)(tensor), eval_transform(config)(image), atol=1e-6)
