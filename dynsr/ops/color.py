"""Colour conversions used by the field's metrics and by Y-channel models.

BT.601 "studio range" as MATLAB's ``rgb2ycbcr`` on [0, 1] input, expressed on the 0..255
scale that PSNR tables use: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in [0, 1]).
The conversion is not rounded (CONVENTIONS.md). Tensors are (..., 3, H, W).
"""

from __future__ import annotations

import torch

__all__ = ["quantize", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]

# Rows: Y, Cb, Cr; columns: R, G, B. Output on the 0..255 scale for R, G, B in [0, 1].
_RGB_TO_YCBCR = (
    (65.481, 128.553, 24.966),
    (-37.797, -74.203, 112.0),
    (112.0, -93.786, -18.214),
)
_YCBCR_OFFSET = (16.0, 128.0, 128.0)


def _check_rgb(x: torch.Tensor) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected RGB tensor (..., 3, H, W), got shape {tuple(x.shape)}")


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma Y (..., 1, H, W) on the 0..255 scale (16..235) from RGB in [0, 1]."""
    _check_rgb(x)
    r, g, b = x.unbind(-3)
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    return y.unsqueeze(-3)


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """YCbCr (..., 3, H, W) on the 0..255 scale from RGB in [0, 1] (MATLAB rgb2ycbcr × 255)."""
    _check_rgb(x)
    m = torch.tensor(_RGB_TO_YCBCR, dtype=x.dtype, device=x.device)
    off = torch.tensor(_YCBCR_OFFSET, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x) + off.view(3, 1, 1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr`: YCbCr on the 0..255 scale to RGB in [0, 1]."""
    _check_rgb(x)
    m = torch.linalg.inv(torch.tensor(_RGB_TO_YCBCR, dtype=torch.float64)).to(x)
    off = torch.tensor(_YCBCR_OFFSET, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,...jhw->...ihw", m, x - off.view(3, 1, 1))


def quantize(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Round [0, 1] values to the ``bits``-bit grid and back to [0, 1], as saving does.

    Uses ``floor(v * max + 0.5)`` (MATLAB's im2uint8 rounding for non-negative values) after
    clamping, so results match images written to 8-bit files and read back.
    """
    levels = float(2**bits - 1)
    return torch.floor(x.clamp(0.0, 1.0) * levels + 0.5) / levels
