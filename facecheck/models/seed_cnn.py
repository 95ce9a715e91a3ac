"""The report's CNNClassifier, layer for layer."""

from __future__ import annotations

from torch import nn

from facecheck.errors import ConfigError
from facecheck.models.base import FaceClassifier
from facecheck.models.registry import register_model


# The report says only "Normalize"; ImageNet statistics (the registry default) are the natural reading.
@register_model("seed_cnn", "the report's two-conv CNN (conv32-BN-pool, conv64-BN-pool, fc128, fc2)", input_size=256)
def seed_cnn(image_size: int = 256, hidden_dim: int = 128, dropout: float = 0.0, **_: object) -> FaceClassifier:
    """Two conv blocks and two linear layers, as in the report.

    Pooling reading: the report lists MaxPool(2, 2) after the first conv only,
    yet gives fc1 64*64*64 inputs, which at 256x256 input needs the map pooled
    twice (256 -> 128 -> 64). We therefore pool after both convs. ReLU is the
    (unnamed) activation after each BatchNorm and after fc1. fc1 thus has
    262,144 inputs, which is why the first epoch's loss is huge (8.2 in the
    report). The report's CNN has no dropout; ``dropout`` defaults to 0 and
    is here only so that tuning can add it.
    """
    if image_size % 4:
        raise ConfigError(f"seed_cnn needs an image size divisible by 4, got {image_size}")
    side = image_size // 4
    backbone = nn.Sequential(
        nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
    )
    head = nn.Sequential(
        nn.Linear(64 * side * side, hidden_dim),
        nn.ReLU(inplace=True),
        *([nn.Dropout(dropout)] if dropout > 0 else []),
        nn.Linear(hidden_dim, FaceClassifier.num_classes),
    )
    # Not in-place before cam_layer, so Grad-CAM hooks see an intact activation.
    return FaceClassifier(
        backbone, head, feature_dim=64 * side * side, cam_layer=backbone[6], blocks=[backbone[0:4], backbone[4:9]]
    )
