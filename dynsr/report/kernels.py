"""UDVD's per-pixel dynamic kernels, sampled on a grid of points for the comparison report.

UDVD (:mod:`dynsr.models.udvd`) predicts, in every refinement block, one k×k kernel per
output pixel (the paper's Fig. 4 shows them). :func:`capture_kernels` runs the model once
more with a forward hook on each :class:`~dynsr.models.udvd.DynamicBlock`: the hook gets the
block's inputs (image, features) and recomputes their kernels with the block's own public
steps, ``predict_kernels(joint_features(image, features))``, so the model's code is not
touched and its normal forward is not slowed. The pass runs in float32 without autocast: a
report made with ``--precision bf16`` shows the kernels of the float32 network (the two
differ by bf16 rounding, a few 1e-3 of a tap).

Only the kernels at a grid of points are kept (:data:`GRID_POINTS` along the longer side),
which keeps the report small: for x2's three blocks, 32 × 32 points take about 90 kB. The
kernel shown for a point and a block is the one that made that block's output pixel under
the point: for a U block of rate r it is the kernel of the LR pixel below the point and of
the output sub-pixel ``(y mod r, x mod r)`` (channel ``t·r² + a·r + q`` of
:func:`dynsr.ops.dynamic_upsample`), for a D block the kernel at the pixel itself.

Large images are run in windows (:data:`WINDOW` LR pixels plus a margin of the model's
receptive radius, :data:`dynsr.upscale.tiling.RECEPTIVE_RADIUS`), each keeping the points of
its inner part, so memory stays bounded; points inside a window's inner part get the
kernels of a whole-image pass (tested).

:func:`encode_kernels` packs the samples for the browser: per block and point one float32
scale (the largest |tap|) and k² int8 taps (``round(127 · tap / scale)``), base64 in a small
script file that the report loads with a ``<script>`` tag (pages opened from disk may not
``fetch`` files).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dynsr.models.udvd import DynamicBlock
from dynsr.upscale.tiling import FALLBACK_RADIUS, RECEPTIVE_RADIUS, _crop_conditions

__all__ = ["GRID_POINTS", "WINDOW", "KernelSamples", "capture_kernels", "decode_taps",
           "dynamic_blocks", "encode_kernels", "grid_positions", "kernels_script"]

#: Grid points along the longer side of the SR image (fewer on the shorter side).
GRID_POINTS = 32
#: Side of the LR windows of the capture pass (plus the margin on each side).
WINDOW = 256


@dataclass(frozen=True)
class KernelSamples:
    """Kernels of every dynamic block at the grid points ``rows`` × ``cols`` (SR pixels)."""

    rows: list[int]  # SR row of each grid row
    cols: list[int]  # SR column of each grid column
    blocks: list[dict]  # per block: {"kind": "U" or "D", "rate": r, "size": k}
    kernels: list[torch.Tensor]  # per block: float32 (len(rows), len(cols), k, k)


def dynamic_blocks(model: nn.Module) -> list[DynamicBlock]:
    """The model's UDVD refinement blocks in forward order (empty for other models)."""
    return [m for m in model.modules() if isinstance(m, DynamicBlock)]


def grid_positions(length: int, count: int) -> list[int]:
    """``count`` pixel positions spread evenly over ``length``, at the centres of equal
    cells (so the border pixels, where the kernels see zero padding, are not favoured)."""
    count = max(1, min(count, length))
    return [min(length - 1, int((i + 0.5) * length / count)) for i in range(count)]


def capture_kernels(model: nn.Module, lr: torch.Tensor, scale: int,
                    conditions: dict | None = None, *, name: str = "udvd",
                    points: int = GRID_POINTS, window: int = WINDOW) -> KernelSamples:
    """Run ``model`` (a UDVD) on ``lr`` (C, h, w) in [0, 1] and keep each dynamic block's
    kernels at a grid of about ``points`` points along the longer SR side (module doc).

    ``conditions``: the model's ``blur=`` / ``noise=`` (LR-grid maps are cut per window);
    ``name``: the registry name, for the margin of the windows.
    """
    blocks = dynamic_blocks(model)
    if not blocks:
        raise ValueError(f"{name} has no dynamic blocks whose kernels could be shown")
    if lr.dim() != 3 or lr.shape[0] not in (1, 3):
        raise ValueError(f"expected an LR image (C, h, w) with C = 1 or 3, got {tuple(lr.shape)}")
    height, width = lr.shape[-2:]
    sr_h, sr_w = scale * height, scale * width
    longer = max(sr_h, sr_w)
    rows = grid_positions(sr_h, max(1, round(points * sr_h / longer)))
    cols = grid_positions(sr_w, max(1, round(points * sr_w / longer)))
    rates = [block.rate for block in blocks]
    # Resolution of each block's output relative to the LR grid.
    factors = list(np.cumprod(rates))
    if int(factors[-1]) != scale:
        raise ValueError(f"{name}: the blocks upscale x{int(factors[-1])}, not x{scale}")
    sizes = [block.kernel_size for block in blocks]
    out = [torch.zeros(len(rows), len(cols), k, k) for k in sizes]
    margin = RECEPTIVE_RADIUS.get(name, FALLBACK_RADIUS) + 2
    device = next(model.parameters()).device
    colour = lr.detach().to(device, torch.float32)
    colour = colour.expand(3, -1, -1) if colour.shape[0] == 1 else colour
    conditions = conditions or {}

    for top in range(0, height, window):
        for left in range(0, width, window):
            core = (top, min(top + window, height), left, min(left + window, width))
            # Grid points whose LR pixel lies in this window's inner part.
            mine_r = [i for i, y in enumerate(rows) if core[0] <= y // scale < core[1]]
            mine_c = [j for j, x in enumerate(cols) if core[2] <= x // scale < core[3]]
            if not mine_r or not mine_c:
                continue
            y0, y1 = max(0, core[0] - margin), min(height, core[1] + margin)
            x0, x1 = max(0, core[2] - margin), min(width, core[3] + margin)
            ys = torch.tensor([rows[i] for i in mine_r])
            xs = torch.tensor([cols[j] for j in mine_c])
            captured: list[torch.Tensor] = []

            def keep(block: nn.Module, args: tuple, output: torch.Tensor,
                     ys=ys, xs=xs, y0=y0, x0=x0, captured=captured) -> None:
                m = len(captured)
                image, features = args
                kernels = block.predict_kernels(block.joint_features(image, features))[0]
                f, r, k = int(factors[m]), block.rate, block.kernel_size
                # This block's output pixel under each point, in the window's coordinates.
                oy = torch.div(ys * f, scale, rounding_mode="floor") - y0 * f
                ox = torch.div(xs * f, scale, rounding_mode="floor") - x0 * f
                taps = kernels.view(k * k, r * r, *kernels.shape[-2:])
                sub = (oy % r)[:, None] * r + (ox % r)[None, :]
                picked = taps[:, sub, (oy // r)[:, None], (ox // r)[None, :]]  # (k², ny, nx)
                captured.append(picked.permute(1, 2, 0).reshape(len(ys), len(xs), k, k)
                                .float().cpu())

            handles = [block.register_forward_hook(keep) for block in blocks]
            try:
                piece = colour[:, y0:y1, x0:x1][None].contiguous()
                kwargs = _crop_conditions(conditions, (height, width), (y0, y1), (x0, x1),
                                          device)
                with torch.inference_mode(), torch.autocast(device.type, enabled=False):
                    model(piece, **kwargs)
            finally:
                for handle in handles:
                    handle.remove()
            for m, samples in enumerate(captured):
                out[m][torch.tensor(mine_r)[:, None], torch.tensor(mine_c)[None, :]] = samples
    infos = [{"kind": "U" if r > 1 else "D", "rate": int(r), "size": int(k)}
             for r, k in zip(rates, sizes, strict=True)]
    return KernelSamples(rows, cols, infos, out)


def encode_kernels(samples: KernelSamples) -> dict:
    """The JSON-ready form the report's script reads (module doc): ``rows``, ``cols``,
    ``blocks`` and, base64, ``scales`` (float32, block-major then point) and ``taps``
    (int8, block, point, tap)."""
    scales, taps = [], []
    for kernels in samples.kernels:
        flat = kernels.reshape(-1, kernels.shape[-1] * kernels.shape[-2]).numpy()
        peak = np.abs(flat).max(axis=1)
        safe = np.where(peak > 0, peak, 1.0)
        scales.append(peak.astype(np.float32))
        taps.append(np.round(flat / safe[:, None] * 127).astype(np.int8).ravel())
    return {
        "rows": samples.rows,
        "cols": samples.cols,
        "blocks": samples.blocks,
        "scales": base64.b64encode(np.concatenate(scales).astype("<f4").tobytes()).decode(),
        "taps": base64.b64encode(np.concatenate(taps).tobytes()).decode(),
    }


def kernels_script(key: str, samples: KernelSamples) -> str:
    """A script file registering ``samples`` under ``key`` in ``window.dynsrKernels``."""
    data = json.dumps(encode_kernels(samples), separators=(",", ":"))
    return ("(window.dynsrKernels = window.dynsrKernels || {})"
            f"[{json.dumps(key)}] = {data};\n")


def decode_taps(encoded: dict) -> list[np.ndarray]:
    """Inverse of :func:`encode_kernels` (to within the int8 step): per block
    (rows, cols, k, k) float32; what the report's script computes, for tests."""
    scales = np.frombuffer(base64.b64decode(encoded["scales"]), dtype="<f4")
    taps = np.frombuffer(base64.b64decode(encoded["taps"]), dtype=np.int8)
    n = len(encoded["rows"]) * len(encoded["cols"])
    out, s_at, t_at = [], 0, 0
    for block in encoded["blocks"]:
        k = block["size"]
        s = scales[s_at:s_at + n]
        t = taps[t_at:t_at + n * k * k].reshape(n, k * k).astype(np.float32)
        out.append((t * s[:, None] / 127).reshape(len(encoded["rows"]),
                                                  len(encoded["cols"]), k, k))
        s_at, t_at = s_at + n, t_at + n * k * k
    return out

