"""The contract every facecheck model follows: features, then a classification head.

Keeping the two apart lets later features work on any registered model:
frozen-backbone training caches ``features`` and trains ``head`` only,
Grad-CAM hooks ``cam_layer``, and export traces ``forward``.
"""

from __future__ import annotations

import torch
from torch import nn


class FaceClassifier(nn.Module):
    """Maps a normalised ``(B, 3, H, W)`` batch to ``(B, 2)`` logits (index 1 = fake)."""

    num_classes = 2

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        feature_dim: int,
        cam_layer: nn.Module,
        blocks: list[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature_dim = feature_dim
        # The last spatial layer: where class-activation maps are taken.
        self.cam_layer = cam_layer
        # The backbone's stages in input-to-output order, for unfreezing the last N.
        # A plain tuple, so the modules are not registered twice.
        self.blocks: tuple[nn.Module, ...] = tuple(blocks) if blocks is not None else (backbone,)
        # Parameter-free input filter (see models/filters.py); set by create_model.
        self.input_filter: nn.Module = nn.Identity()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim)`` features of ``images``."""
        return self.backbone(self.input_filter(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def two_layer_head(feature_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """The report's transfer-learning head: Linear(features, hidden)-ReLU-Dropout-Linear(hidden, 2)."""
    return nn.Sequential(
        nn.Linear(feature_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, FaceClassifier.num_classes),
    )
