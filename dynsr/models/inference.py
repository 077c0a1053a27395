"""Running any registered model on an LR batch: one calling convention for every command.

Models map RGB (B, 3, h, w) in [0, 1] to RGB (B, 3, s·h, s·w). :func:`upscale_batch` adds
what every caller needs around that: grayscale images (replicated to RGB, averaged back),
non-blind models' degradation arguments, the compute dtype, and the fast CPU path —
channels_last memory format and bf16 autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from dynsr.degrade.noise_level import GREY_NOISE_GAIN
from dynsr.ops.fused_conv import canonical_channels_last

__all__ = ["PRECISIONS", "compute_dtype", "prepare_model", "upscale_batch"]

PRECISIONS = ("fp32", "bf16", "fp16")


def compute_dtype(model: nn.Module) -> torch.dtype:
    """The dtype inputs are given in: the parameters' (float64 for parameter-free models,
    so the bicubic baseline matches MATLAB to the digit)."""
    param = next(model.parameters(), None)
    return torch.float64 if param is None else param.dtype


def prepare_model(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """Eval mode, and channels_last weights when asked (convs then run the faster kernels)."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def upscale_batch(
    model: nn.Module,
    lr: torch.Tensor,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    keep_layout: bool = False,
    **conditions,
) -> torch.Tensor:
    """SR of ``lr`` (B, C, h, w), C = 1 or 3, in [0, 1]; returns float32/64 (B, C, s·h, s·w).

    ``conditions`` go to the model's forward (``blur=``, ``noise=`` for UDVD). ``precision``
    ``"bf16"``/``"fp16"`` runs under autocast on ``lr``'s device; the result is returned in the
    model's dtype. Not clamped: callers round and clamp when they save or measure.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if lr.dim() != 4 or lr.shape[1] not in (1, 3):
        raise ValueError(f"expected an LR batch (B, 1 or 3, h, w), got {tuple(lr.shape)}")
    dtype = compute_dtype(model)
    gray = lr.shape[1] == 1
    x = lr.to(dtype).expand(-1, 3, -1, -1) if gray else lr.to(dtype)
    if gray and conditions.get("noise") is not None:
        # The same noise in three channels: told √3 σ to remove it (GREY_NOISE_GAIN).
        conditions["noise"] = conditions["noise"] * GREY_NOISE_GAIN
    x = canonical_channels_last(x) if channels_last else x.contiguous()
    if precision == "fp16" and x.device.type == "cpu":
        raise ValueError("fp16 is not supported on the CPU: use bf16 or fp32")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=autocast_dtype or dtype,
                                                enabled=autocast_dtype is not None):
        sr = model(x, **conditions)
    sr = sr.to(dtype)
    if not keep_layout:  # keep_layout: a channels_last result stays so (no copy)
        sr = sr.contiguous()
    return sr.mean(dim=1, keepdim=True) if gray else sr
