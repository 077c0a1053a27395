"""UDVD's ONNX adapter (:func:`dynsr.models.registry.register_onnx`).

The graph takes ``lr`` (N, 3, H, W) and ``degradation_map`` (N, 16, H, W): UDVD is non-blind,
so its degradation map is an input (build it with
:func:`dynsr.models.udvd.build_degradation_map` or :func:`dynsr.degrade.degradation_map`).
The dynamic filtering and upsampling of the refinement blocks are replaced by their
size-independent formulations (:mod:`dynsr.ops.traceable`).
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn

from dynsr.models.registry import OnnxAdapter, register_onnx
from dynsr.models.udvd import UDVD, DynamicBlock, build_degradation_map
from dynsr.ops.traceable import traceable_filter, traceable_upsample

__all__ = ["udvd_onnx"]

# The verification map: width 1.3, noise 15 (a typical condition UDVD was trained on).
_VERIFY_BLUR, _VERIFY_NOISE = 1.3, 15.0


def _traceable_apply_kernels(block: DynamicBlock, image: torch.Tensor,
                             kernels: torch.Tensor) -> torch.Tensor:
    if block.rate == 1:
        return traceable_filter(image, kernels, block.kernel_size)
    return traceable_upsample(image, kernels, block.kernel_size, block.rate)


class _UDVDGraph(nn.Module):
    def __init__(self, model: UDVD) -> None:
        super().__init__()
        self.model = model
        for block in model.refinement:
            block.apply_kernels = types.MethodType(_traceable_apply_kernels, block)

    def forward(self, lr: torch.Tensor, dmap: torch.Tensor) -> torch.Tensor:
        return self.model.forward_with_map(lr, dmap)[-1]


@register_onnx(UDVD)
def udvd_onnx(model: UDVD) -> OnnxAdapter:
    """Inputs ``lr`` and ``degradation_map``; verified with a width-1.3, noise-15 map."""
    return OnnxAdapter(
        _UDVDGraph(copy.deepcopy(model)),
        reference=lambda lr, dmap: model.forward_with_map(lr, dmap)[-1].float(),
        input_names=("lr", "degradation_map"),
        inputs=lambda lr: (lr, build_degradation_map(lr, blur=_VERIFY_BLUR,
                                                     noise=_VERIFY_NOISE)))
