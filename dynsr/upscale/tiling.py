"""Tiled inference: any image size through any model, with invisible seams.

The LR image is cut into tiles of ``tile`` × ``tile`` pixels that overlap by ``overlap``
pixels; only one tile at a time is moved to the device, and the SR tiles are blended into
an output assembled on the CPU.

Blend. Where two tiles overlap (``overlap`` LR pixels), each tile first drops a *margin*
next to its cut edge (where the model saw zero/replicate padding instead of the real
neighbours), then the two tiles cross-fade over a *ramp* of ``min(overlap // 2, 16)`` LR
pixels with a raised cosine, ``w = ½ − ½·cos(π t)`` for one tile and ``1 − w`` for the other.
The 1-D weights of neighbouring tiles sum to 1 and the 2-D weights are their outer
products, so the weights form a partition of unity and no normalisation pass is needed.
Edges of the image itself are not cut edges: there the tile sees what the whole image sees.

Exactness. An output pixel is exact (equal to the untiled result) when every tile giving it a
weight saw its whole receptive field: ``margin = (overlap − ramp) / 2 ≥ radius``.
:data:`RECEPTIVE_RADIUS` holds each model's measured radius (in LR pixels: an impulse
changes outputs by more than 1e-6 up to that distance, with trained weights where they
exist), and
:func:`default_overlap` turns it into the overlap that makes tiling exact. Tile starts are
multiples of 4, so models that pixel-unshuffle by 2 or 4 (DyConvSR, DDet's trunk) see the
same sub-pixel grid in every tile.

Out of memory. :func:`upscale_with_retry` catches ``RuntimeError`` (which includes
``torch.OutOfMemoryError``) whose message says "out of memory" and starts the image again
with tiles half as large, down to :data:`MIN_TILE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

from dynsr.models.inference import upscale_batch

__all__ = [
    "ALIGN",
    "DEFAULT_TILE",
    "MIN_TILE",
    "RECEPTIVE_RADIUS",
    "Tiling",
    "default_overlap",
    "default_tile",
    "is_out_of_memory",
    "plan_tiles",
    "upscale_tiled",
    "upscale_with_retry",
]

#: Tile starts are multiples of this (lcm of the models' pixel-unshuffle factors 2 and 4).
ALIGN = 4
#: Default tile side in LR pixels: large enough that the overlap costs little, small enough
#: that UDVD's 128-channel features of one tile stay well under 1 GB.
DEFAULT_TILE = 384
#: Models whose features are small enough for larger tiles by default: DyConvSR keeps 48 to
#: 192 channels at a quarter of the LR pixels, so a 1024 tile stays under 1 GB even at x4,
#: and a 640×360 or 1024×768 frame is upscaled in one piece (no overlap computed twice, no
#: blending).
TILE_SIDE: dict[str, int] = {"dyconvsr": 1024}
#: Out-of-memory retries stop below this tile side.
MIN_TILE = 32
#: Longest cross-fade between two tiles, LR pixels.
MAX_RAMP = 16

#: Receptive radius in LR pixels, the largest over x2, x3 and x4: the farthest output an
#: impulse in a random 112 × 112 LR image changes by more than 1e-6
#: (``benchmarks/receptive_radius.py``). Trained kernels reach further than random ones, so
#: models with trained weights use those: ddet-rgb 36.75 (x2; 26.75 random), kpn7 32.75
#: (Table II's run; 26.25 random), dyconvsr 13.38 (13.25 random), udvd-lite 15.75 (x2, the
#: shipped 30,000-iteration weights; 11.25 random), udvd-wide 16.25 (x2, shipped; 16.00 at
#: x3, 16.38 at x4). The other DDet variants take ddet-rgb's radius, udvd takes its random
#: 13.25 plus udvd-lite's trained margin of 4.5. DDet's trunk works on the bicubic-upscaled
#: image, so its radius in LR pixels is largest at x2 (random ddet-rgb: 26.75 / 18.67 / 13.88
#: at x2 / x3 / x4); the others' stays within half a pixel.
#: At 1e-4 instead of 1e-6 (a fortieth of an 8-bit step) trained ddet-rgb x2 reaches 24.25.
#: The ``-real`` models are largest at x1, where an LR pixel is an HR pixel (random, 176 × 176
#: LR: ddet-real, kpn7-real and kpn7-pr-real 42.0, ddet-rgb-real 53.0). With their City100
#: weights ddet-real and kpn7-real reach 42.0 too (x1, 176 × 176); the unshipped ones take
#: trained ddet-rgb's reach on the HR grid, 2 · 36.75 = 73.5.
RECEPTIVE_RADIUS: dict[str, int] = {
    "bicubic": 3,
    "ddet": 37,
    "ddet-real": 42,
    "ddet-release": 37,
    "ddet-rgb": 37,
    "ddet-rgb-real": 74,
    "dyconvsr": 14,
    "kpn7": 33,
    "kpn7-pr": 37,
    "kpn7-pr-cdm": 37,
    "kpn7-pr-cdm-real": 74,
    "kpn7-pr-real": 74,
    "kpn7-real": 42,
    "udvd": 18,
    "udvd-lite": 16,
    "udvd-wide": 17,
}
#: Radius assumed for models missing from the table (e.g. a model added later).
FALLBACK_RADIUS = 32


def _ramp_of(overlap: int) -> int:
    return min(overlap // 2, MAX_RAMP)


def default_tile(name: str) -> int:
    """The default tile side (LR pixels) for model ``name``."""
    return TILE_SIDE.get(name, DEFAULT_TILE)


def default_overlap(name: str) -> int:
    """The overlap (LR pixels, a multiple of :data:`ALIGN`) that makes tiling exact for model
    ``name``: ``2 · radius + ramp``, the ramp being :data:`MAX_RAMP`."""
    radius = RECEPTIVE_RADIUS.get(name, FALLBACK_RADIUS)
    return ALIGN * math.ceil((2 * radius + MAX_RAMP) / ALIGN)


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA/MPS/CPU allocation failure (``torch.OutOfMemoryError`` is a RuntimeError)."""
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class Tiling:
    """Tile positions and blend weights along one axis of ``length`` LR pixels."""

    def __init__(self, length: int, tile: int, overlap: int) -> None:
        if tile < 1 or overlap < 0:
            raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
        self.length = length
        self.ramp = _ramp_of(overlap)
        self.margin = (overlap - self.ramp) / 2
        if length <= tile:
            self.spans = [(0, length)]
            return
        # The step is a multiple of ALIGN and at least the ramp, so one tile's fade-in ends
        # before its fade-out starts.
        step = max(ALIGN * ((tile - overlap) // ALIGN), ALIGN * math.ceil(self.ramp / ALIGN),
                   ALIGN)
        size = step + overlap
        # Enough tiles that the last one reaches the end; it may be shorter than the others
        # but always holds more than `overlap` pixels, so its ramp fits.
        count = 1 + max(0, math.ceil((length - size) / step))
        self.spans = [(i * step, min(i * step + size, length)) for i in range(count)]

    def weights(self, index: int, scale: int) -> torch.Tensor:
        """Blend weights (float32, ``scale · tile length``) of tile ``index`` in HR pixels."""
        start, end = self.spans[index]
        centres = torch.arange(scale * start, scale * end, dtype=torch.float64) + 0.5
        weight = torch.ones_like(centres)
        if index > 0:  # fade in over the overlap with the previous tile
            weight *= self._fade(centres, scale * (start + self.margin), scale)
        if index + 1 < len(self.spans):  # fade out where the next tile fades in
            weight *= 1 - self._fade(centres, scale * (self.spans[index + 1][0] + self.margin),
                                     scale)
        return weight.float()

    def _fade(self, centres: torch.Tensor, begin: float, scale: int) -> torch.Tensor:
        width = scale * self.ramp
        if width == 0:
            return (centres >= begin).double()
        t = ((centres - begin) / width).clamp(0, 1)
        return 0.5 - 0.5 * torch.cos(math.pi * t)


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> tuple[Tiling, Tiling]:
    """The row and column tilings of an ``height`` × ``width`` LR image."""
    return Tiling(height, tile, overlap), Tiling(width, tile, overlap)


def _crop_conditions(conditions: dict, size: tuple[int, int], rows: tuple[int, int],
                     cols: tuple[int, int], device: torch.device) -> dict:
    """Per-pixel maps (B, C, h, w) on the LR grid are cut like the image; others pass as is.

    ``ValueError`` for a map of another size than the image."""
    cropped = {}
    for key, value in conditions.items():
        if isinstance(value, torch.Tensor):
            if value.dim() == 4:
                if tuple(value.shape[-2:]) != size:
                    # Said here: the model would only see a tile's size and confuse users.
                    raise ValueError(f"the per-pixel {key} map is {value.shape[-2]}x"
                                     f"{value.shape[-1]}, the image {size[0]}x{size[1]}")
                value = value[..., rows[0]:rows[1], cols[0]:cols[1]]
            value = value.to(device)
        cropped[key] = value
    return cropped


#: Largest sample value of the integer output types :func:`upscale_tiled` can fill.
_INTEGER_MAX = {torch.uint8: 255, torch.uint16: 65535}


def upscale_tiled(
    model: nn.Module,
    lr: torch.Tensor,
    scale: int,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = 0,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    conditions: dict | None = None,
    progress: bool = False,
    out_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """SR of ``lr`` (C, h, w) on the CPU, C = 1 or 3, by tiles → (C, s·h, s·w) on the CPU.

    ``model`` must already be on ``device`` and in eval mode. ``conditions`` are the model's
    keyword arguments (UDVD ``blur=``, ``noise=``); per-pixel maps are cut per tile. A tile
    whose reduced-precision result is not finite is run again in fp32.

    ``out_dtype`` float32 (default): the blended result, not clamped. ``torch.uint8`` or
    ``torch.uint16``: samples ``floor(clamp(x, 0, 1) · max + 0.5)``, as image files are
    written. Tiles are blended in float32 one row of tiles at a time, and each finished band
    of rows is stored in ``out_dtype`` at once, so an 8-bit output costs a quarter of the
    float one (a 24-megapixel photo at x2: 0.29 instead of 1.15 GB).
    """
    if lr.dim() != 3:
        raise ValueError(f"expected an LR image (C, h, w), got shape {tuple(lr.shape)}")
    if out_dtype != torch.float32 and out_dtype not in _INTEGER_MAX:
        raise ValueError(f"out_dtype must be float32, uint8 or uint16, got {out_dtype}")
    channels, height, width = lr.shape
    rows, cols = plan_tiles(height, width, tile, overlap)
    conditions = dict(conditions or {})
    if hasattr(model, "global_context") and (len(rows.spans) > 1 or len(cols.spans) > 1):
        # Whole-image statistics a tile cannot see (DyConvSR's pooled attention), computed
        # once in bands and given to every tile.
        colour = lr.expand(3, -1, -1) if channels == 1 else lr
        conditions.update(model.global_context(colour, device))
    if len(rows.spans) == 1 and len(cols.spans) == 1:
        # One tile: nothing to blend, the result goes straight to its samples.
        return _single_tile(model, lr, scale, device, precision, channels_last, conditions,
                            out_dtype)
    out = torch.empty(channels, scale * height, scale * width, dtype=out_dtype)
    positions = [(i, j) for i in range(len(rows.spans)) for j in range(len(cols.spans))]
    bar = tqdm(total=len(positions), desc="tiles", unit="tile", leave=False,
               disable=None if progress and len(positions) > 1 else True)
    # Float32 sums of the current row of tiles, in two buffers used in turn: freshly
    # allocated memory is slow to touch, so they are allocated once.
    tallest = max(y1 - y0 for y0, y1 in rows.spans)
    buffers = [torch.empty(channels, scale * tallest, scale * width) for _ in range(2)]
    band = buffers[1][:, :0]
    band_top = 0  # the band's first LR row
    for i, (y0, y1) in enumerate(rows.spans):
        fresh = buffers[i % 2][:, :scale * (y1 - y0)]
        carried = band[:, scale * (y0 - band_top):]  # the previous tile row's overlap
        fresh[:, :carried.shape[1]] = carried
        fresh[:, carried.shape[1]:] = 0
        band, band_top = fresh, y0
        for j, (x0, x1) in enumerate(cols.spans):
            piece = lr[:, y0:y1, x0:x1].unsqueeze(0).to(device)
            kwargs = _crop_conditions(conditions, (height, width), (y0, y1), (x0, x1),
                                      piece.device)
            sr = _run_tile(model, piece, precision, channels_last, kwargs)[0].to("cpu",
                                                                              torch.float32)
            weight = rows.weights(i, scale)[:, None] * cols.weights(j, scale)[None, :]
            band[:, :, scale * x0:scale * x1].addcmul_(sr, weight)
            del piece, sr
            bar.update()
        # Rows above the next row of tiles get no more contributions: store them.
        done = rows.spans[i + 1][0] if i + 1 < len(rows.spans) else y1
        _store(out, band[:, :scale * (done - y0)], scale * y0)
    bar.close()
    return out


def _run_tile(model: nn.Module, piece: torch.Tensor, precision: str, channels_last: bool,
              kwargs: dict, keep_layout: bool = False) -> torch.Tensor:
    """The model on one tile (1, C, h, w) on its device; a reduced-precision result that is
    not finite is computed again in fp32."""
    sr = upscale_batch(model, piece, precision=precision, channels_last=channels_last,
                       keep_layout=keep_layout, **kwargs)
    if precision != "fp32" and not torch.isfinite(sr).all():
        # Half precision can overflow on unusual inputs: never hand back NaN or black.
        sr = upscale_batch(model, piece, precision="fp32", channels_last=channels_last,
                           keep_layout=keep_layout, **kwargs)
    return sr


def _single_tile(model: nn.Module, lr: torch.Tensor, scale: int, device, precision: str,
                 channels_last: bool, conditions: dict, out_dtype: torch.dtype) -> torch.Tensor:
    """:func:`upscale_tiled` for an image that is one tile: no blending buffers. A
    channels_last result is stored pixel-interleaved (the returned (C, H, W) is a view of
    (H, W, C) memory), so that neither the store nor a later (H, W, C) array copies across
    the layouts."""
    channels, height, width = lr.shape
    kwargs = _crop_conditions(conditions, (height, width), (0, height), (0, width), device)
    sr = _run_tile(model, lr.unsqueeze(0).to(device), precision, channels_last, kwargs,
                   keep_layout=True)
    sr = sr[0].to("cpu", torch.float32)
    if sr.permute(1, 2, 0).is_contiguous() and not sr.is_contiguous():
        out = torch.empty(scale * height, scale * width, channels,
                          dtype=out_dtype).permute(2, 0, 1)
    else:
        out = torch.empty(channels, scale * height, scale * width, dtype=out_dtype)
    _store(out, sr, 0)
    return out


def _store(out: torch.Tensor, rows: torch.Tensor, top: int) -> None:
    """Write float ``rows`` into ``out`` from HR row ``top``, quantised if ``out`` is integer."""
    target = out[:, top:top + rows.shape[1]]
    maxval = _INTEGER_MAX.get(out.dtype)
    if maxval is None:
        target.copy_(rows)
    else:
        # floor(clamp(x, 0, 1)·max + 0.5) in two passes: clamping x·max + 0.5 to
        # [0.5, max + 0.5] gives the same numbers, and the cast to the integer type
        # truncates, which is floor for these non-negative values.
        target.copy_(torch.mul(rows, maxval).add_(0.5).clamp_(0.5, maxval + 0.5))


def upscale_with_retry(
    run: Callable[[int, int], torch.Tensor],
    tile: int,
    overlap: int,
    *,
    notify: Callable[[str], None] | None = None,
    empty_cache: Callable[[], None] | None = None,
) -> torch.Tensor:
    """``run(tile, overlap)``, again with halved tiles while it runs out of memory.

    The overlap is halved too when it would no longer leave room for a step of half the
    tile (tiling then is no longer exact, but the image gets done). ``notify`` receives one
    line per retry; ``empty_cache`` frees the device's cached blocks before a retry.
    """
    while True:
        try:
            return run(tile, overlap)
        except RuntimeError as err:
            if not is_out_of_memory(err) or tile // 2 < MIN_TILE:
                raise
            tile //= 2
            overlap = min(overlap, tile // 2)
            if empty_cache is not None:
                empty_cache()
            if notify is not None:
                notify(f"out of memory; retrying with tile {tile}, overlap {overlap}")
