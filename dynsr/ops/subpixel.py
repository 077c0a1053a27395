"""The sub-pixel output stage of an SR network in one pass: cells of predicted sub-pixels,
gated, pixel-shuffled and added to the nearest-neighbour upscaled input, written straight
into a pixel-interleaved image (float, or 8/16-bit samples).

Written for DyConvSR's output (:mod:`dynsr.models.dyconvsr`): done with torch ops it took a
one-hot convolution for the skip, an ``addcmul`` into the shuffled layout and four passes to
store uint8 samples, about 7 of the 40 ms of a 640×360 x2 frame on 2 cores under an AVX2 cap.
fp32 CPU tensors take the native loop (``dynsr/native/shuffle_residual.c``), everything else
(and ``DYNSR_NATIVE=0``) the torch ops, with the same results to the bit.
"""

from __future__ import annotations

import torch

from dynsr.native import shuffle_residual
from dynsr.ops.color import SAMPLE_MAX, sample_levels

__all__ = ["shuffle_gated_residual"]


def shuffle_gated_residual(cells: torch.Tensor, gate: torch.Tensor, image: torch.Tensor,
                           scale: int, *, out_dtype: torch.dtype = torch.float32
                           ) -> torch.Tensor:
    """``out[m·r + i, m·q + j, c] = image[(m·r + i) // s, (m·q + j) // s, c]
    + cells[r, q, (i·m + j)·C + c] · gate[r, q]``, with ``s = scale`` and ``m = u·s``.

    Args:
        cells: (R, Q, m²·C) float32: for each cell of u × u input pixels, its m × m output
            pixels, row-major, colours interleaved. Any strides whose last one is 1.
        gate: (R, Q), broadcast over each cell's pixels.
        image: (u·R, u·Q, C), the input added back (nearest-neighbour upscaled).
        scale: s.
        out_dtype: float32 (the sum), or uint8 / uint16 samples
            ``floor(clamp(v, 0, 1)·max + 0.5)`` as image files are written.

    Returns:
        A contiguous (m·R, m·Q, C) tensor of ``out_dtype``.
    """
    rows, cols, values = cells.shape
    side = image.shape[0] // rows
    m = side * scale
    colours = image.shape[2]
    if (image.shape != (side * rows, side * cols, colours) or values != m * m * colours
            or gate.shape != (rows, cols)):
        raise ValueError(f"shuffle_gated_residual: cells {tuple(cells.shape)}, gate "
                         f"{tuple(gate.shape)} and image {tuple(image.shape)} do not fit "
                         f"scale {scale}")
    if out_dtype != torch.float32 and out_dtype not in SAMPLE_MAX:
        raise ValueError(f"out_dtype must be float32, uint8 or uint16, got {out_dtype}")
    out = torch.empty(m * rows, m * cols, colours, dtype=out_dtype, device=cells.device)
    native = _native_loop(cells, gate, image)
    if native is not None:
        kind = {torch.float32: 0, torch.uint8: 1, torch.uint16: 2}[out_dtype]
        status = native(cells.data_ptr(), *cells.stride()[:2], gate.data_ptr(), *gate.stride(),
                        image.data_ptr(), *image.stride(), out.data_ptr(), rows, cols, side,
                        scale, colours, kind, torch.get_num_threads())
        if status != 0:
            raise MemoryError("shuffle_gated_residual: could not allocate the row buffers")
        return out
    # The same sums with torch ops: every (r, i_a, i_p, q, j_b, j_q, c) of the output, with
    # i = i_a·s + i_p, reads image pixel (r·u + i_a, q·u + j_b).
    blocks = (rows, side, scale, cols, side, scale, colours)
    skip = image.reshape(rows, side, 1, cols, side, 1, colours).expand(blocks)
    shuffled = cells.reshape(rows, cols, side, scale, side, scale, colours).permute(
        0, 2, 3, 1, 4, 5, 6)
    total = torch.addcmul(skip, shuffled, gate.reshape(rows, 1, 1, cols, 1, 1, 1))
    maxval = SAMPLE_MAX.get(out_dtype)
    out.view(blocks).copy_(total if maxval is None else sample_levels(total, maxval))
    return out


def _native_loop(cells: torch.Tensor, *others: torch.Tensor):
    tensors = (cells, *others)
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return None
    if cells.stride(2) != 1 or torch.compiler.is_compiling():
        return None
    return shuffle_residual()
