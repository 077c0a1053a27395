"""Layers shared by several models (DDet's MDA trunk and UDVD's feature extractor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResidualBlock", "conv3x3"]


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3×3 convolution with bias, padding 1 (same size)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity skip: no batch norm, no residual scaling (EDSR style)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))
