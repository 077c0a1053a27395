"""Size-independent formulations of dynsr's operators, for tracing to ONNX.

The operators dynsr runs contain code the ONNX tracer would record with the example's sizes
baked in: the dynamic-kernel ops (autograd Functions with size-dependent row bands and
``out=`` buffers), MATLAB ``imresize`` (weights computed from the input length), Python
branches on ``h % 2`` / ``h % 4`` for padding, and the attention-mixed convolution's
per-sample grouped convolution (groups = batch). These functions compute the same values
with graphs that hold for every size; models' ONNX adapters (:mod:`dynsr.models.registry`)
put them in place of the originals in a copy of the model:

* dynamic filter / upsample: a loop over taps of (constant-offset slice of the zero-padded
  image) × (kernel channel), summed in the same tap order;
* integer-scale MATLAB bicubic upscaling: polyphase. For an integer scale s the taps and
  weights of output pixel i·s + a depend only on a, so each phase is a fixed 1-D filter over
  the symmetrically padded input (the padding is an index gather built from the input length
  at run time); rows first, then columns, as MATLAB; the s² phases are interleaved with a
  pixel shuffle;
* padding to a multiple (replicate): pad by the largest amount, then slice to the rounded-up
  length computed from the run-time shape;
* the attention-mixed conv: ``conv(x, Σ_k π_k W_k) = Σ_k π_k conv(x, W_k)``: one conv with
  all banks, then the attention-weighted sum (batch-independent graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.ops.dynamic_conv import AttentionMixedConv2d
from dynsr.ops.resize import resize_weights

__all__ = [
    "BankSumConv",
    "replicate_to_multiple",
    "traceable_filter",
    "traceable_upsample",
    "traceable_upscale",
]


def _stop(offset: int, reach: int) -> int | None:
    """Slice end for a window starting at ``offset`` of a tensor padded by ``reach`` in total:
    negative (counted from the end) so it holds for every length."""
    return None if offset == reach else offset - reach


def _traceable_dynamic(image: torch.Tensor, kernels: torch.Tensor, k: int,
                       subpixels: int) -> list[torch.Tensor]:
    """Σ_t K[:, t·S + s] · shift_t(image) for each sub-pixel s (shared kernels), as in
    :mod:`dynsr.ops.dynamic`; the tap order matches its accumulation order."""
    p = k // 2
    padded = F.pad(image, (p, p, p, p))
    outs: list[torch.Tensor | None] = [None] * subpixels
    for u in range(k):
        for v in range(k):
            view = padded[:, :, u:_stop(u, 2 * p), v:_stop(v, 2 * p)]
            t = u * k + v
            for s in range(subpixels):
                c = t * subpixels + s
                term = view * kernels[:, c:c + 1]
                outs[s] = term if outs[s] is None else outs[s] + term
    return outs  # type: ignore[return-value]


def _shuffle_phases(phases: Sequence[torch.Tensor], r: int) -> torch.Tensor:
    """Phase planes (B, C, H, W), index a·r + q, → (B, C, rH, rW) with phase (a, q) at
    pixel (i·r + a, j·r + q). Channels are gathered colour-major for pixel_shuffle by
    concatenation, so the graph has no shape-dependent reshape."""
    channels = phases[0].shape[1]
    planes = [phase[:, c:c + 1] for c in range(channels) for phase in phases]
    return F.pixel_shuffle(torch.cat(planes, dim=1), r)


def traceable_filter(image: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`dynsr.ops.dynamic_filter` with shared kernels (B, k², H, W), size-independent."""
    return _traceable_dynamic(image, kernels, k, 1)[0]


def traceable_upsample(image: torch.Tensor, kernels: torch.Tensor, k: int,
                       r: int) -> torch.Tensor:
    """:func:`dynsr.ops.dynamic_upsample` (kernels (B, k²·r², H, W)), size-independent."""
    return _shuffle_phases(_traceable_dynamic(image, kernels, k, r * r), r)


def _bicubic_phases(scale: int) -> list[tuple[list[int], list[float]]]:
    """(tap offsets, weights) of MATLAB bicubic ×scale for each output phase a, read from
    :func:`resize_weights` far from the borders (so no mirroring), in its tap order."""
    length = 16
    idx, weights = resize_weights(length, length * scale, float(scale), dtype=torch.float64)
    centre = length // 2
    rows = [centre * scale + a for a in range(scale)]
    return [((idx[r] - centre).tolist(), weights[r].tolist()) for r in rows]


def _mirror_pad(x: torch.Tensor, dim: int, reach: int) -> torch.Tensor:
    """MATLAB's symmetric padding ([..., x1, x0 | x0, x1, ...]) by ``reach`` along dim, as
    an index gather computed from the run-time length (works for any length ≥ 1)."""
    n = x.shape[dim]
    idx = torch.arange(-reach, n + reach, device=x.device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def traceable_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` for an integer scale ≥ 2, size-independent."""
    phases = _bicubic_phases(scale)
    reach = max(max(abs(o) for o in offsets) for offsets, _ in phases)
    padded = _mirror_pad(_mirror_pad(x, 2, reach), 3, reach)

    def filter_dim(y: torch.Tensor, dim: int, offsets: list[int],
                   weights: list[float]) -> torch.Tensor:
        out = None
        for offset, weight in zip(offsets, weights, strict=True):
            start = reach + offset
            window = slice(start, _stop(start, 2 * reach))
            view = y[:, :, window] if dim == 2 else y[:, :, :, window]
            # float32 weights, as imresize uses the input dtype's weights.
            term = view * torch.tensor(weight, dtype=y.dtype)
            out = term if out is None else out + term
        return out  # type: ignore[return-value]

    rows = [filter_dim(padded, 2, o, w) for o, w in phases]  # MATLAB: rows first
    planes = [filter_dim(row, 3, o, w) for row in rows for o, w in phases]
    return _shuffle_phases(planes, scale)


def _round_up(n: torch.Tensor | int, multiple: int) -> torch.Tensor | int:
    return (n + multiple - 1) // multiple * multiple


def replicate_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right to a multiple: pad by the most, slice back (run-time size)."""
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (0, multiple - 1, 0, multiple - 1), mode="replicate")
    return padded[:, :, :_round_up(h, multiple), :_round_up(w, multiple)]


class BankSumConv(nn.Module):
    """:class:`AttentionMixedConv2d` as one conv over all banks + an attention-weighted sum."""

    def __init__(self, layer: AttentionMixedConv2d) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> torch.Tensor:
        layer = self.layer
        k, c_out = layer.num_kernels, layer.out_channels
        y = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation)
        if attention is None:
            attention = layer.attention(x)  # (B, K)
        out = None
        for bank in range(k):
            a = attention[:, bank:bank + 1, None, None]
            term = a * y[:, bank * c_out:(bank + 1) * c_out]
            if layer.bias is not None:
                term = term + a * layer.bias[bank][None, :, None, None]
            out = term if out is None else out + term
        return out  # type: ignore[return-value]
