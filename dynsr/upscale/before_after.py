"""A before/after picture of one upscaled image: the input enlarged by plain bicubic
interpolation (what resizing gives without SR) on the left, the SR result on the right, the
same size each, split by a white line."""

from __future__ import annotations

import torch

from dynsr.ops import imresize

__all__ = ["before_after"]

DIVIDER = 4  # pixels of white between the halves


def before_after(lr: torch.Tensor, sr: torch.Tensor, *, max_width: int = 2048) -> torch.Tensor:
    """(C, H, 2W + divider) in [0, 1] from the LR input (C, h, w) and its SR (C, H, W).

    Pictures wider than ``max_width`` are made from the left part of both (the same crop),
    so a huge photo gives a viewable picture at full SR resolution."""
    if lr.shape[0] != sr.shape[0]:
        raise ValueError(f"before/after: LR has {lr.shape[0]} channels, SR {sr.shape[0]}")
    height, width = sr.shape[-2:]
    before = imresize(lr.to(torch.float64), size=(height, width)).clamp(0, 1)
    half = min(width, max(16, (max_width - DIVIDER) // 2))
    divider = torch.ones(sr.shape[0], height, DIVIDER, dtype=torch.float64)
    return torch.cat([before[..., :half], divider, sr.to(torch.float64)[..., :half]], dim=-1)
