"""Parameter counts and FLOPs of registered models (for `dynsr models` and the benchmarks)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_parameters"]

_aten = torch.ops.aten


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _elementwise(flops_per_element: int):
    def formula(*args, out_shape=None, **kwargs) -> int:
        return flops_per_element * math.prod(out_shape)

    return formula


# The dynamic-kernel operators are loops of multiply-adds over shifted views; counting
# elementwise multiplies (1 FLOP per output element) and multiply-adds (2) adds their cost
# to torch's convolution/matmul counts. Other elementwise ops (activations, additions) are
# not counted, as is usual for SR FLOP tables.
_DYNAMIC_OP_FLOPS = {
    _aten.addcmul_: _elementwise(2),
    _aten.addcmul: _elementwise(2),
    _aten.mul: _elementwise(1),
    _aten.mul_: _elementwise(1),
}


def count_flops(
    model: nn.Module, lr_size: tuple[int, int] = (256, 256), probe: int = 64, **conditions
) -> int:
    """FLOPs (a multiply-add = 2) of one forward pass on an RGB LR image of ``lr_size``.

    Convolutions and matrix products are counted by ``torch.utils.flop_counter``, the
    dynamic filtering loops by their multiplies and multiply-adds. The count is measured on a
    ``probe``×``probe`` input and scaled by the pixel ratio: these networks are fully
    convolutional, so their
    FLOPs are proportional to the pixel count (the attention MLPs on pooled features, a few
    hundred FLOPs, are the only exception).
    """
    x = torch.rand(1, 3, probe, probe)
    counter = FlopCounterMode(display=False, custom_mapping=_DYNAMIC_OP_FLOPS)
    model.eval()
    with torch.no_grad(), counter:
        model(x.to(next(model.parameters(), x).dtype), **conditions)
    return round(counter.get_total_flops() * (lr_size[0] * lr_size[1]) / (probe * probe))
