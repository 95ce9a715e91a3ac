"""Input filters a model applies before its backbone: parameter-free, so checkpoints and exports carry them.

``npr``: the neighbouring-pixel residual of Tan et al. (NPR, CVPR 2024):
the image minus its 2x nearest-neighbour down-and-up-sampled copy. Up-sampling
layers of generators leave correlations between the pixels of each 2x2 cell;
the residual keeps those and removes the image content the backbone would
otherwise learn from.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facecheck.errors import ConfigError


class NeighbourResidual(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Even sides only: a trailing odd row/column would have no 2x2 cell.
        height, width = images.shape[-2] // 2 * 2, images.shape[-1] // 2 * 2
        images = images[..., :height, :width]
        coarse = F.interpolate(images[..., ::2, ::2], scale_factor=2.0, mode="nearest")
        return images - coarse


INPUT_FILTERS: dict[str, type[nn.Module]] = {"none": nn.Identity, "npr": NeighbourResidual}


def input_filter(name: str) -> nn.Module:
    if name not in INPUT_FILTERS:
        raise ConfigError(f"unknown input filter {name!r}; choose one of {', '.join(INPUT_FILTERS)}")
    return INPUT_FILTERS[name]()
