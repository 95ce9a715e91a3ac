"""Input pipelines: JPEG normalisation removes compression differences; augmentations behave."""

import io

import numpy as np
import torch
from PIL import Image, ImageFilter

from facecheck.config import PreprocessConfig
from facecheck.data.transforms import NormalizeJpeg, eval_transform, train_tensor_transform, train_transform


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


def test_fit_keeps_small_images_native_and_shrinks_large_ones_whole():
    from facecheck.data.transforms import ShrinkToFit

    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    assert np.array_equal(np.asarray(ShrinkToFit(40)(small)), np.asarray(small))  # no resampling at its size
    # A 4x larger picture with a bright frame: shrunk as a whole the frame stays in view, where a
    # centre crop (the `none` rule) would see only the dark middle.
    large = np.full((160, 160, 3), 255, dtype=np.uint8)
    large[20:140, 20:140] = 0
    out = np.asarray(ShrinkToFit(40)(Image.fromarray(large)))
    assert out.shape == (40, 40, 3)
    assert out[0].mean() > 200 and out[20, 20].mean() < 20


def test_model_defaults_fill_normalisation_from_the_registry():
    from facecheck.config import get_preset, merge
    from facecheck.models.registry import model_entry, with_model_defaults

    lite = with_model_defaults(get_preset("lite0-native-jpeg"))
    assert lite.preprocess.mean == model_entry("efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    # switching the model of a preset switches its normalisation too
    switched = with_model_defaults(merge(get_preset("lite0-native-jpeg"), {"model": {"name": "mobilenet_v2"}}))
    assert switched.preprocess.mean == model_entry("mobilenet_v2").mean != (0.5, 0.5, 0.5)
    # a preset's explicit choice wins
    explicit = merge(get_preset("seed-cnn"), {"preprocess": {"mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]}})
    assert with_model_defaults(explicit).preprocess.mean == (0.1, 0.2, 0.3)


def test_numpy_views_equal_torchvisions_totensor_normalize_and_views():
    """ToViews computes evaluation tensors in NumPy; they must be torchvision's, to the last bit."""
    from torchvision import transforms as T

    from facecheck.data.transforms import ToViews, Views

    rng = np.random.default_rng(0)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    cases = [(None, "none", 31, 29), (None, "flip", 32, 32), (24, "none", 33, 30), (24, "flip", 32, 27),
             (24, "five-crop", 32, 32), (24, "five-crop-flip", 33, 31), (40, "flip", 32, 32)]  # fmt: skip
    for crop, tta, width, height in cases:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        views = Views(crop, tta)
        expected = views(T.Normalize(mean, std)(T.ToTensor()(image)))
        got = ToViews(mean, std, views)(image)
        assert got.dtype == torch.float32 and got.shape == expected.shape, (crop, tta)
        assert torch.equal(got, expected), (crop, tta, (got - expected).abs().max())
    grey = Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8))
    assert ToViews(mean, std, Views(None, "flip"))(grey).shape == (2, 3, 20, 20)
