"""Parameter counts and FLOPs of registered models (for `dynsr models` and the benchmarks).

Counting FLOPs builds and runs every model (about 20 s for all of them), so ``dynsr models``
reads them from ``model_table.json`` beside this file, written by
``python benchmarks/model_table.py`` when a model changes; a test checks the table against
the registry and against fresh counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "LR_SIZE",
    "MODEL_TABLE",
    "count_flops",
    "count_parameters",
    "measure_model",
    "measure_model_table",
]

#: The stored table of every registered model (``dynsr models``).
MODEL_TABLE = Path(__file__).with_name("model_table.json")
#: The LR size of the FLOP figures.
LR_SIZE = (256, 256)

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
    # The network as written: a fused inference path (DyConvSR's) calls oneDNN ops the
    # counter does not know, and computes the same network.
    fused = [m for m in model.modules() if getattr(m, "fused_cpu_inference", False)]
    for module in fused:
        module.fused_cpu_inference = False
    try:
        with torch.no_grad(), counter:
            model(x.to(next(model.parameters(), x).dtype), **conditions)
    finally:
        for module in fused:
            module.fused_cpu_inference = True
    return round(counter.get_total_flops() * (lr_size[0] * lr_size[1]) / (probe * probe))


def measure_model(name: str, scale: int) -> dict[str, int]:
    """Parameters and FLOPs (``LR_SIZE`` input; non-blind models with their degradation map)
    of registered model ``name`` at ``scale``, freshly counted: the network its shipped
    weights build (their manifest configuration, e.g. ``ddet-rgb`` x3 with predictor width
    64), the registry's defaults where none ship."""
    from dynsr.models.registry import create, get_spec
    from dynsr.upscale.manifest import find_weights

    entry = find_weights(name, scale)
    model = create(name, scale=scale, **(entry.config if entry is not None else {}))
    conditions = {"blur": 1.3, "noise": 15.0} if get_spec(name).needs_degradation else {}
    return {"parameters": count_parameters(model),
            "flops": count_flops(model, LR_SIZE, **conditions)}


def measure_model_table() -> dict:
    """The table ``dynsr models`` prints: every registered model with its description and,
    per scale, :func:`measure_model`."""
    from dynsr.models.registry import available

    return {
        "lr_size_for_flops": list(LR_SIZE),
        "models": {spec.name: {"summary": spec.summary, "paper": spec.paper,
                               "non_blind": spec.needs_degradation,
                               "scales": {str(s): measure_model(spec.name, s)
                                          for s in spec.scales}}
                   for spec in available()},
    }

