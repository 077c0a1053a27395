"""MATLAB bicubic interpolation as a model: the baseline row of every SR table."""

from __future__ import annotations

import torch
from torch import nn

from dynsr.models.registry import OnnxAdapter, register, register_onnx
from dynsr.ops.resize import imresize
from dynsr.ops.traceable import traceable_upscale


class Bicubic(nn.Module):
    """Upscale by ``scale`` with MATLAB ``imresize(x, scale, 'bicubic')``; no parameters.

    Runs in the input's dtype; ``dynsr eval`` feeds float64 to parameter-free models so the
    baseline matches MATLAB to the last digit.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, self.scale)


@register("bicubic", scales=(2, 3, 4), summary="MATLAB-exact bicubic interpolation (baseline)")
def bicubic(scale: int) -> nn.Module:
    return Bicubic(scale)


class _BicubicGraph(nn.Module):
    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return traceable_upscale(lr, self.scale)


@register_onnx(Bicubic)
def bicubic_onnx(model: Bicubic) -> OnnxAdapter:
    """Polyphase MATLAB bicubic; the reference runs in float64, as dynsr runs it."""
    return OnnxAdapter(_BicubicGraph(int(model.scale)),
                       reference=lambda lr: model(lr.double()).float())
