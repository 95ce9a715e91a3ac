"""The report's transfer-learning model: ImageNet MobileNetV2 with a new two-layer head."""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

from facecheck.errors import WeightsError
from facecheck.models.base import FaceClassifier, two_layer_head
from facecheck.models.registry import register_model
from facecheck.models.weights import MOBILENET_V2_IMAGENET, load_state_dict, resolve_weights


@register_model(
    "mobilenet_v2", "torchvision MobileNetV2 (ImageNet) + Linear-ReLU-Dropout-Linear head", has_pretrained=True
)
def mobilenet_v2(
    pretrained: bool = False, weights: str | None = None, hidden_dim: int = 512, dropout: float = 0.3, **_: object
) -> FaceClassifier:
    """Report model 2. The report puts Dropout(0.3) after the ReLU between its two
    Linear layers; the head is Linear(1280, hidden)-ReLU-Dropout-Linear(hidden, 2)."""
    network = tv_mobilenet_v2(weights=None)
    if pretrained:
        path = resolve_weights(MOBILENET_V2_IMAGENET, explicit=weights)
        try:
            network.load_state_dict(load_state_dict(path), strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{path} does not fit torchvision's MobileNetV2: {str(exc).splitlines()[0]}") from None
    feature_dim = network.last_channel
    backbone = nn.Sequential(network.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    head = two_layer_head(feature_dim, hidden_dim, dropout)
    return FaceClassifier(
        backbone, head, feature_dim=feature_dim, cam_layer=network.features[-1], blocks=list(network.features)
    )
