"""MATLAB-exact bicubic resizing (``imresize``) in torch.

The field's numbers (every PSNR table since SRCNN) are measured on images made by MATLAB's
``imresize(img, scale, 'bicubic')``. OpenCV's and PIL's bicubic differ from it (no
antialiasing when shrinking, another cubic constant) by tenths of a dB, so dynsr
re-implements MATLAB's definition:

* cubic kernel with a = -0.5 (Keys), support [-2, 2];
* when shrinking (scale < 1) with antialiasing, the kernel is stretched by 1/scale and its
  weights multiplied by scale;
* output length ``ceil(in_length * scale)``; output pixel x (1-based) samples the input at
  ``u = x / scale + 0.5 * (1 - 1 / scale)``;
* ``ceil(kernel_width) + 2`` taps per output pixel starting at ``floor(u - kernel_width/2)``;
  weights normalised to sum 1 per output pixel;
* out-of-range taps mirrored symmetrically (index -1 reads index 0, as MATLAB's
  ``[1:n, n:-1:1]`` padding);
* the dimension with the smaller scale is resized first (rows first when equal), as MATLAB
  does.

The result is float; round to uint8 (``floor(255 x + 0.5)``) to imitate MATLAB on 8-bit images.
Everything is torch ops (index_select, multiply-add), so the resize is batched, runs on any
device and is differentiable. Memory: one output-sized accumulator per dimension, no
(out, taps, ...) temporary.
"""

from __future__ import annotations

import math

import torch

__all__ = ["imresize", "resize_weights", "cubic"]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax2 * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(
    in_length: int,
    out_length: int,
    scale: float,
    antialias: bool = True,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps of a MATLAB bicubic resize along one dimension.

    Returns ``(indices, weights)``, both (out_length, taps): output pixel i is
    ``sum_t weights[i, t] * input[indices[i, t]]``. Indices are 0-based and already mirrored
    into range. Weights are computed in float64 and then cast to ``dtype``.
    """
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        kernel_width = kernel_width / scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64, device=device)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left.unsqueeze(1) + torch.arange(taps, dtype=torch.float64, device=device)
    dist = u.unsqueeze(1) - idx
    weights = scale * cubic(dist * scale) if shrink_aa else cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)

    # Symmetric padding: MATLAB indexes [1..n, n..1] periodically (1-based idx here).
    idx = idx.long() - 1
    period = 2 * in_length
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= in_length, period - 1 - idx, idx)

    # Drop tap columns that are zero for every output pixel (MATLAB does the same).
    keep = (weights != 0).any(dim=0)
    return idx[:, keep], weights[:, keep].to(dtype)


def _resize_dim(x: torch.Tensor, dim: int, out_length: int, scale: float, antialias: bool):
    in_length = x.shape[dim]
    idx, w = resize_weights(in_length, out_length, scale, antialias, x.dtype, x.device)
    # Broadcast weights of shape (out,) along `dim`.
    view = [1] * x.dim()
    view[dim] = out_length
    # One output-sized accumulator; in-place addcmul_ is autograd-safe here because the
    # accumulator is never an input of a backward formula.
    out = x.index_select(dim, idx[:, 0]) * w[:, 0].view(view)
    for t in range(1, idx.shape[1]):
        out.addcmul_(x.index_select(dim, idx[:, t]), w[:, t].view(view))
    return out


def imresize(
    x: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``x`` (..., H, W) like MATLAB's ``imresize(x, scale, 'bicubic')``.

    Give either ``scale`` (a number or (scale_h, scale_w); output ``ceil(H*scale)``) or
    ``size`` (out_h, out_w; the scale is then out/in per dimension, as MATLAB does).
    Floating-point input only; the dtype is kept. For 8-bit work, round the result with
    ``floor(255 * y + 0.5)`` as MATLAB's uint8 conversion does.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize needs a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"imresize needs a tensor of shape (..., H, W), got {tuple(x.shape)}")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale or size")
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize: output size must be positive, got {size}")
        scale_h, scale_w = out_h / in_h, out_w / in_w
    else:
        scale_h, scale_w = (scale, scale) if isinstance(scale, int | float) else scale
        scale_h, scale_w = float(scale_h), float(scale_w)
        if scale_h <= 0 or scale_w <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        out_h, out_w = math.ceil(in_h * scale_h), math.ceil(in_w * scale_w)

    steps = [(-2, out_h, scale_h), (-1, out_w, scale_w)]
    if scale_w < scale_h:  # MATLAB resizes the dimension with the smallest scale first
        steps.reverse()
    y = x
    for dim, out_length, s in steps:
        if y.shape[dim] == out_length and s == 1.0:
            continue
        y = _resize_dim(y, y.dim() + dim, out_length, s, antialias)
    return y
