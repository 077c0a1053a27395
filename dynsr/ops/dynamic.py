"""Per-pixel dynamic filtering and dynamic upsampling (DDet / UDVD style).

Semantics
---------
``dynamic_filter(x, kernels)``, x (B, C, H, W), zero padding ``p = k // 2``, k odd::

    y[b, c, i, j] = sum_{u, v} K[b, u*k + v, i, j] * x[b, c, i + u - p, j + v - p]

Taps are row-major (``t = u*k + v``). Kernels are applied as given (no softmax, no
normalisation). Two kernel layouts, told apart by the channel count of ``kernels``:

* shared, (B, k², H, W): one kernel per pixel, used for every channel;
* per channel, (B, C·k², H, W), channel-major: channel c uses kernel channels
  ``[c·k², (c+1)·k²)``, i.e. index ``c·k² + t``.

With C == 1 both layouts are the same thing. If both readings fit (C an odd square, e.g.
C = 9 and 81 kernel channels) pass ``kernel_size`` to choose.

``dynamic_upsample(x, kernels, scale)`` (UDVD's U block), kernels (B, k²·r², H, W), r = scale,
tap-major then sub-pixel: kernel channel ``t·r² + s`` with ``s = a·r + q`` is the weight of
tap t for output pixel ``(i·r + a, j·r + q)``::

    out[b, c, i*r + a, j*r + q] = sum_t K[b, t*r² + a*r + q, i, j] * x[b, c, i + u - p, j + v - p]

Output (B, C, rH, rW). This is ``pixel_shuffle`` order: the r² filter results of channel c are
stacked as channels ``c·r² + s`` of a (B, C·r², H, W) tensor and ``F.pixel_shuffle(·, r)`` puts
channel ``c·r² + a·r + q`` at sub-pixel (a, q). The kernels are shared across channels.

How it is computed
------------------
fp32 CPU tensors go to the native one-pass loops of :mod:`dynsr.native` (``dynamic_taps.c``):
every output row is summed over all taps in registers before the next, so memory sees each
element about once (512×512×3, k=7, 2 threads: ≈ 2.6 ms forward against ≈ 4.0 ms for the
torch loop below; ``benchmarks/bench_dynamic_ops.py``). Everything else (float64, bf16,
other devices, ``torch.compile`` tracing or a dispatch mode such as FLOP counting, no C
compiler, ``DYNSR_NATIVE=0``) takes the torch tap loop described here, which gives the same
results to float rounding.

Neither pass materialises an unfolded (B, C·k², H, W) tensor. x is zero-padded once, then a
Python loop over the k² taps accumulates ``out += K_t * shifted_view_t`` in place
(``addcmul_``), broadcasting a shared kernel over channels (and, for upsampling, the view over
the r² sub-pixels). The backward pass uses the same loop: ``grad_x`` is accumulated into the
shifted views of a padded buffer and cropped; ``grad_K[t]`` is ``grad_y * view_t``, summed over
channels for shared kernels (an ``addcmul_`` chain on the tap plane for few channels, a reused
product buffer + ``sum`` for many). Extra memory is O(input + output), never O(k² · input).
Only the gradients that are needed are computed (``ctx.needs_input_grad``), and only the
tensor each one reads is saved (K for grad_x, x for grad_K).

Layouts and dtypes
------------------
* Outputs and ``grad_x`` come back in x's memory format (contiguous or channels_last), and
  ``grad_K`` in the kernels' memory format.
* The tap loop wants each kernel tap as a W-contiguous plane. Kernels in channels_last
  (what a channels_last conv produces) are pixel-major; they are transposed into a tap-major
  scratch one band of rows at a time (≤ ``tap_bands.SCRATCH_BYTES``) instead of a full copy. This
  transposition is single-threaded in torch and costs more than the filtering itself
  (512×512, k=7: ≈ 7-10 ms vs ≈ 4 ms), so produce contiguous kernels where that is free.
* Few-channel (C < ``_CHANNELS_LAST_MIN_C``) channels_last images are computed in contiguous
  layout (the inner loop would be C elements long); many-channel ones with shared kernels stay
  channels_last (the inner loop runs over C with the kernel broadcast, no transposition).
  Per-channel kernels are always computed in contiguous layout.
* Accumulation is float32 for bfloat16/float16 inputs (a k²-term sum in bf16 is ~6x less
  accurate, and not faster here) and the result is rounded once to the promoted input dtype;
  reduced-precision kernel taps are widened through one reused tap-sized buffer. float64
  stays float64.
* Autocast: the ops are not on autocast's cast lists and do no casting of their own. Under
  CPU bf16 autocast a bf16 feature map filtered by bf16 kernels gives bf16 (accumulated in fp32);
  an fp32 image filtered by bf16 kernels from a conv gives fp32. This avoids copying the large
  kernel tensor to fp32 just to satisfy a cast policy.
* Pure torch ops: any device. A Python loop over taps (and sub-pixels in the backward pass),
  never over pixels.

Speed notes (2 cores): 512×512×3, k=7: forward ≈ 4 ms vs ≈ 70 ms for F.unfold, 6 MB extra vs
≈ 300 MB. Much of the backward is the kernel gradient's first touch of fresh memory (51 MB of
page faults and zeroing); the ``dynsr`` commands keep freed memory for reuse
(:func:`dynsr.malloc.keep_freed_memory`), which took forward+backward from ≈ 20 to ≈ 10 ms
(``benchmarks/bench_dynamic_ops.py --reuse-memory``; docs/api.md).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

from dynsr.native import DynamicTaps, dynamic_taps
from dynsr.ops.tap_bands import (
    TapCast,
    TapMajorBands,
    accumulation_dtype,
    row_bands,
)

__all__ = [
    "DynamicFilterFunction",
    "DynamicUpsampleFunction",
    "dynamic_filter",
    "dynamic_upsample",
]

# Channels_last images with at least this many channels (and shared kernels) stay channels_last
# during the tap loop; fewer channels are computed in contiguous layout. Crossover measured at
# 8-16 channels with benchmarks/bench_dynamic_ops.py --layouts.
_CHANNELS_LAST_MIN_C = 16
# Shared-kernel grad_K: up to this many channels, sum over C with an addcmul_ chain per tap;
# above it, through a product buffer and torch.sum (measured crossover ≈ 8-16 channels).
_CHANNEL_LOOP_MAX_C = 8


# --------------------------------------------------------------------------------------------
# validation


def _odd_square_root(n: int) -> int | None:
    """k if n == k² with k odd and positive, else None."""
    if n <= 0:
        return None
    k = math.isqrt(n)
    return k if k * k == n and k % 2 == 1 else None


def _check_pair(x: torch.Tensor, kernels: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if kernels.dim() != 4:
        raise ValueError(
            f"{name}: kernels must be (B, channels, H, W), got shape {tuple(kernels.shape)}"
        )
    if kernels.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: batch size mismatch: x has {x.shape[0]}, kernels have {kernels.shape[0]}"
        )
    if kernels.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{name}: spatial size mismatch: x is {tuple(x.shape[-2:])}, kernels are "
            f"{tuple(kernels.shape[-2:])} (kernels are per pixel of x)"
        )
    if not (x.is_floating_point() and kernels.is_floating_point()):
        raise ValueError(f"{name}: x and kernels must be floating point")
    if x.device != kernels.device:
        raise ValueError(f"{name}: x is on {x.device}, kernels on {kernels.device}")


def _filter_layout(
    channels: int, kernel_channels: int, kernel_size: int | None
) -> tuple[int, bool]:
    """(k, per_channel) for dynamic_filter from the kernel channel count."""
    if kernel_size is not None:
        k = int(kernel_size)
        if k <= 0 or k % 2 == 0:
            raise ValueError(f"dynamic_filter: kernel_size must be odd and positive, got {k}")
        if kernel_channels == k * k:
            return k, False
        if kernel_channels == channels * k * k:
            return k, True
        raise ValueError(
            f"dynamic_filter: kernels have {kernel_channels} channels; with kernel_size={k} "
            f"expected k²={k * k} (shared) or C·k²={channels * k * k} (per channel)"
        )
    shared_k = _odd_square_root(kernel_channels)
    per_k = None
    if channels > 1 and kernel_channels % channels == 0:
        per_k = _odd_square_root(kernel_channels // channels)
    if shared_k is not None and per_k is not None:
        raise ValueError(
            f"dynamic_filter: {kernel_channels} kernel channels with C={channels} is ambiguous "
            f"(shared {shared_k}x{shared_k} or per-channel {per_k}x{per_k}); pass kernel_size"
        )
    if shared_k is not None:
        return shared_k, False
    if per_k is not None:
        return per_k, True
    root = math.isqrt(kernel_channels)
    hint = (
        f" ({root}x{root} is even; kernel sizes must be odd)"
        if root * root == kernel_channels
        else ""
    )
    raise ValueError(
        f"dynamic_filter: kernels have {kernel_channels} channels, expected k² (shared) or "
        f"C·k² = {channels}·k² (per channel) with k odd{hint}"
    )


# --------------------------------------------------------------------------------------------
# the tap loops


def _padded(x: torch.Tensor, p: int, dtype: torch.dtype, fmt: torch.memory_format) -> torch.Tensor:
    """Zero-padded copy of x in dtype/fmt, written in one pass (only the border is zeroed)."""
    b, c, h, w = x.shape
    shape = (b, c, h + 2 * p, w + 2 * p)
    xp = torch.empty(shape, dtype=dtype, device=x.device, memory_format=fmt)
    if p:
        xp[:, :, :p].zero_()
        xp[:, :, h + p :].zero_()
        xp[:, :, p : h + p, :p].zero_()
        xp[:, :, p : h + p, w + p :].zero_()
    xp[:, :, p : h + p, p : w + p].copy_(x)
    return xp


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _compute_format(x: torch.Tensor, groups: int, subpixels: int) -> torch.memory_format:
    """Layout of the tap loop: channels_last only for many-channel channels_last inputs with
    shared kernels (per-channel taps have stride k² along C there: no vectorisation)."""
    if (
        subpixels == 1
        and groups == 1
        and x.shape[1] >= _CHANNELS_LAST_MIN_C
        and _is_channels_last(x)
    ):
        return torch.channels_last
    return torch.contiguous_format


def _taps(k: int) -> Iterator[tuple[int, int, int]]:
    for u in range(k):
        for v in range(k):
            yield u * k + v, u, v


def _tap_forward(
    x: torch.Tensor, kernels: torch.Tensor, k: int, groups: int, subpixels: int
) -> torch.Tensor:
    """out (B, C, S, H, W) = sum_t K[:, g, t, s] * shift_t(x), kernels (B, groups·k²·S, H, W).

    groups is 1 (shared kernel, broadcast over C) or C (per channel). Returned in the
    accumulation dtype, in the compute layout.
    """
    b, c, h, w = x.shape
    _, acc = accumulation_dtype(x.dtype, kernels.dtype)
    p = k // 2
    fmt = _compute_format(x, groups, subpixels)
    xp = _padded(x, p, acc, fmt)
    if fmt == torch.channels_last:
        out = torch.empty((b, c, h, w), dtype=acc, device=x.device, memory_format=fmt)
        out = out.unsqueeze(2)
        bands = [(0, h)]
    else:
        out = torch.empty((b, c, subpixels, h, w), dtype=acc, device=x.device)
        bands = row_bands(kernels)
    # In channels_last compute a tap is one scalar per pixel broadcast over C, so any kernel
    # layout will do: read it as it is.
    kernel_bands = TapMajorBands(
        kernels, bands, x.device, src=kernels, any_layout=fmt == torch.channels_last
    )
    cast = TapCast(acc)
    for r0, r1 in bands:
        kb = kernel_bands.band(r0, r1).unflatten(1, (groups, k * k, subpixels))  # B,G,k²,S,R,W
        ob = out[:, :, :, r0:r1]
        for t, u, v in _taps(k):
            view = xp[:, :, r0 + u : r1 + u, v : v + w].unsqueeze(2)  # (B, C, 1, R, W)
            kt = cast.read(kb[:, :, t])  # (B, G, S, R, W)
            if t == 0:
                torch.mul(view, kt, out=ob)  # the first tap initialises: no zero fill
            else:
                ob.addcmul_(view, kt)
    return out


def _kernel_grad_reduction(
    x_like: torch.Tensor, groups: int, subpixels: int, fmt: torch.memory_format,
    bands: list[tuple[int, int]], acc: torch.dtype, device: torch.device,
) -> tuple[str, torch.Tensor | None]:
    """How the kernel gradient sums over channels, and its reused product buffer if any.

    Shared kernels: grad_K[t] = sum_c gy_c * view_t,c. Few channels: a chain of addcmul_ on
    the (cache-resident) tap plane ("loop"); many: one reused product buffer + sum over C
    ("buffer"); per-channel kernels need no sum ("none"). Never a (B, C, k², ...) temporary.
    """
    b, c, _, w = x_like.shape
    reduce = "none" if groups > 1 or c == 1 else "loop"
    if reduce == "loop" and (fmt == torch.channels_last or c > _CHANNEL_LOOP_MAX_C):
        reduce = "buffer"
    if reduce != "buffer":
        return reduce, None
    rows = max(r1 - r0 for r0, r1 in bands)
    prod = torch.empty((b, c, subpixels, rows, w), dtype=acc, device=device)
    if fmt == torch.channels_last:
        prod = prod.squeeze(2).contiguous(memory_format=fmt).unsqueeze(2)
    return reduce, prod


def _kernel_tap_grad(gb: torch.Tensor, view: torch.Tensor, tap_planes: torch.Tensor,
                     grad_cast: TapCast, reduce: str, prod: torch.Tensor | None) -> None:
    """The gradient of one tap's kernel plane over a row band: gy (B, C, S, R, W) times the
    shifted input (B, C, 1, R, W), summed over channels as ``reduce`` says; ``tap_planes``
    is the band's (B, G, S, R, W) plane of that tap."""
    if reduce == "none":
        plane = tap_planes  # (B, C, S, R, W)
        gt = grad_cast.target(plane)
        torch.mul(gb, view, out=gt)
    else:
        plane = tap_planes[:, 0]  # (B, S, R, W)
        gt = grad_cast.target(plane)
        if reduce == "loop":
            torch.mul(gb[:, 0], view[:, 0], out=gt)
            for ch in range(1, gb.shape[1]):
                gt.addcmul_(gb[:, ch], view[:, ch])
        else:
            pb = prod[:, :, :, : gb.shape[3]]
            torch.mul(gb, view, out=pb)
            torch.sum(pb, dim=1, out=gt)
    grad_cast.store(plane, gt)


def _tap_backward(
    gy: torch.Tensor,
    x: torch.Tensor | None,
    kernels: torch.Tensor | None,
    x_like: torch.Tensor,
    k_like: torch.Tensor,
    k: int,
    groups: int,
    subpixels: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of _tap_forward w.r.t. x (if kernels given) and kernels (if x given).

    gy is (B, C, S, H, W). x_like / k_like (meta tensors are fine) give the shapes, dtypes and
    memory formats of the gradients.
    """
    b, c, h, w = x_like.shape
    device = gy.device
    _, acc = accumulation_dtype(x_like.dtype, k_like.dtype, gy.dtype)
    p = k // 2
    kk = k * k
    need_x, need_k = kernels is not None, x is not None
    fmt = _compute_format(x_like, groups, subpixels)
    if fmt == torch.channels_last:
        gy = gy.squeeze(2).to(dtype=acc, memory_format=fmt).unsqueeze(2)
        bands = [(0, h)]
    else:
        gy = gy.to(dtype=acc, memory_format=torch.contiguous_format)
        bands = row_bands(k_like)
    any_layout = fmt == torch.channels_last

    if need_x:
        gxp = torch.empty(
            (b, c, h + 2 * p, w + 2 * p), dtype=acc, device=device, memory_format=fmt
        ).zero_()
        kernel_bands = TapMajorBands(k_like, bands, device, src=kernels, any_layout=any_layout)
        kernel_cast = TapCast(acc)
    if need_k:
        xp = _padded(x, p, acc, fmt)
        grad_bands = TapMajorBands(k_like, bands, device, any_layout=any_layout)
        grad_cast = TapCast(acc)
        reduce, prod = _kernel_grad_reduction(x_like, groups, subpixels, fmt, bands, acc,
                                              device)

    for r0, r1 in bands:
        gb = gy[:, :, :, r0:r1]
        if need_x:
            kb = kernel_bands.band(r0, r1).unflatten(1, (groups, kk, subpixels))
        if need_k:
            gkb = grad_bands.band(r0, r1).unflatten(1, (groups, kk, subpixels))
        for t, u, v in _taps(k):
            if need_x:
                # x[i + u - p] fed y[i] with weight K_t[i]: scatter gy * K_t back onto it.
                gview = gxp[:, :, r0 + u : r1 + u, v : v + w]
                kt = kernel_cast.read(kb[:, :, t])  # (B, G, S, R, W)
                for s in range(subpixels):
                    gview.addcmul_(gb[:, :, s], kt[:, :, s])
            if need_k:
                view = xp[:, :, r0 + u : r1 + u, v : v + w].unsqueeze(2)
                _kernel_tap_grad(gb, view, gkb[:, :, t], grad_cast, reduce, prod)
        if need_k:
            grad_bands.commit(r0, r1)

    grad_x = grad_kernels = None
    if need_x:
        grad_x = torch.empty_like(x_like, device=device)
        grad_x.copy_(gxp[:, :, p : p + h, p : p + w])
    if need_k:
        grad_kernels = grad_bands.result
    return grad_x, grad_kernels


def _to_format_of(y: torch.Tensor, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """y in dtype and in x's memory format (channels_last or contiguous)."""
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    return y.to(dtype=dtype, memory_format=fmt)


# --------------------------------------------------------------------------------------------
# the one-pass native loops (fp32 on the CPU)


def _native(*tensors: torch.Tensor | None) -> DynamicTaps | None:
    """The native library when every tensor given is an fp32 CPU tensor, else None."""
    present = [t for t in tensors if t is not None]
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in present):
        return None
    # Under torch.compile, or a dispatch mode (FLOP counting, fake tensors), the ops must be
    # seen one by one: the torch loop shows them, a C call would hide them.
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return None
    return dynamic_taps()


# Fresh kernel gradients at least this large are put on transparent huge pages before their
# first touch (see dynamic_taps.c, dynsr_advise_huge_pages). glibc maps blocks of 32 MB and
# more afresh on every allocation, so they always fault; smaller ones may be reused memory
# (dynsr.malloc), and on a 9.4 MB gradient the advice cost more than it saved (the kernel's
# compaction for huge pages: 5.9 against 0.9-2.4 ms), while at 51 MB it took 15 ms to 6.5.
_HUGE_PAGE_MIN_BYTES = 32 << 20


def _strides(t: torch.Tensor, scale: int = 0) -> ctypes.Array:
    """Element strides for the C loops: (b, c, h, w), or with ``scale`` the output addressing
    of a (B, C, rH, rW) tensor seen as (b, c, i, j, a, q) with rows i·r + a, columns j·r + q."""
    sb, sc, sh, sw = t.stride()
    values = (sb, sc, sh, sw) if not scale else (sb, sc, scale * sh, scale * sw, sh, sw)
    return (ctypes.c_int64 * len(values))(*values)


def _call(fn, *args: object) -> None:
    if fn(*args) != 0:
        raise MemoryError("dynamic filtering: could not allocate the native row buffers")


def _native_forward(lib: DynamicTaps, x: torch.Tensor, kernels: torch.Tensor, k: int,
                    groups: int, scale: int) -> torch.Tensor:
    """dynamic_filter (scale 1) or dynamic_upsample in one native pass, in x's memory format."""
    b, c, h, w = x.shape
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    y = torch.empty((b, c, h * scale, w * scale), dtype=x.dtype, memory_format=fmt)
    _call(lib.forward, x.data_ptr(), _strides(x), kernels.data_ptr(), _strides(kernels),
          y.data_ptr(), _strides(y, scale), b, c, h, w, k, groups, scale,
          torch.get_num_threads())
    return y


def _native_backward(lib: DynamicTaps, gy: torch.Tensor, x: torch.Tensor | None,
                     kernels: torch.Tensor | None, x_like: torch.Tensor, k_like: torch.Tensor,
                     k: int, groups: int, scale: int
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients w.r.t. x (if kernels given) and kernels (if x given); gy is the gradient of
    the (B, C, rH, rW) output."""
    b, c, h, w = x_like.shape
    dims = (b, c, h, w, k, groups, scale, torch.get_num_threads())
    gy_strides = _strides(gy, scale)
    grad_x = grad_k = None
    if kernels is not None:
        grad_x = torch.empty_like(x_like, device="cpu")
        _call(lib.input_grad, gy.data_ptr(), gy_strides, kernels.data_ptr(), _strides(kernels),
              grad_x.data_ptr(), _strides(grad_x), *dims)
    if x is not None:
        grad_k = torch.empty_like(k_like, device="cpu")
        if grad_k.numel() * 4 >= _HUGE_PAGE_MIN_BYTES:
            lib.advise_huge_pages(grad_k.data_ptr(), grad_k.numel() * 4)
        _call(lib.kernel_grad, gy.data_ptr(), gy_strides, x.data_ptr(), _strides(x),
              grad_k.data_ptr(), _strides(grad_k), *dims)
    return grad_x, grad_k


# --------------------------------------------------------------------------------------------
# autograd Functions and public API


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    # Shape/dtype/strides for the backward pass without keeping the data alive.
    return torch.empty_like(t, device="meta")


class DynamicFilterFunction(torch.autograd.Function):
    """Autograd Function behind :func:`dynamic_filter`: shifted-view tap loops both ways.

    ``DynamicFilterFunction.apply(x, kernels, k, per_channel)`` with already validated inputs.
    Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        kernels: torch.Tensor,
        k: int,
        per_channel: bool,
    ) -> torch.Tensor:
        out_dtype, _ = accumulation_dtype(x.dtype, kernels.dtype)
        groups = x.shape[1] if per_channel else 1
        need_x, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # Keep only what the needed gradients read: K for grad_x, x for grad_K.
        ctx.save_for_backward(x if need_k else None, kernels if need_x else None)
        ctx.meta = (_meta_like(x), _meta_like(kernels), k, groups)
        lib = _native(x, kernels)
        if lib is not None:
            return _native_forward(lib, x, kernels, k, groups, 1)
        y = _tap_forward(x, kernels, k, groups, 1).squeeze(2)
        return _to_format_of(y, x, out_dtype)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_y: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, kernels = ctx.saved_tensors
        x_like, k_like, k, groups = ctx.meta
        lib = _native(grad_y, x, kernels)
        if lib is not None and x_like.dtype == k_like.dtype == torch.float32:
            grad_x, grad_k = _native_backward(lib, grad_y, x, kernels, x_like, k_like, k,
                                              groups, 1)
            return grad_x, grad_k, None, None
        grad_x, grad_k = _tap_backward(
            grad_y.unsqueeze(2), x, kernels, x_like, k_like, k, groups, 1
        )
        return grad_x, grad_k, None, None


class DynamicUpsampleFunction(torch.autograd.Function):
    """Autograd Function behind :func:`dynamic_upsample`: tap loops + pixel (un)shuffle.

    ``DynamicUpsampleFunction.apply(x, kernels, k, scale)`` with already validated inputs.
    Not twice differentiable.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        kernels: torch.Tensor,
        k: int,
        scale: int,
    ) -> torch.Tensor:
        b, c, h, w = x.shape
        out_dtype, _ = accumulation_dtype(x.dtype, kernels.dtype)
        need_x, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(x if need_k else None, kernels if need_x else None)
        ctx.meta = (_meta_like(x), _meta_like(kernels), k, scale)
        lib = _native(x, kernels)
        if lib is not None:
            return _native_forward(lib, x, kernels, k, 1, scale)
        # (B, C, r², H, W) is already pixel_shuffle's (B, C·r², H, W) channel order.
        y = _tap_forward(x, kernels, k, 1, scale * scale)
        y = F.pixel_shuffle(y.view(b, c * scale * scale, h, w), scale)
        return _to_format_of(y, x, out_dtype)

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_y: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None]:
        x, kernels = ctx.saved_tensors
        x_like, k_like, k, scale = ctx.meta
        lib = _native(grad_y, x, kernels)
        if lib is not None and x_like.dtype == k_like.dtype == torch.float32:
            grad_x, grad_k = _native_backward(lib, grad_y, x, kernels, x_like, k_like, k, 1,
                                              scale)
            return grad_x, grad_k, None, None
        b, c, h, w = x_like.shape
        gy = F.pixel_unshuffle(grad_y.contiguous(), scale).view(b, c, scale * scale, h, w)
        grad_x, grad_k = _tap_backward(gy, x, kernels, x_like, k_like, k, 1, scale * scale)
        return grad_x, grad_k, None, None


def dynamic_filter(
    x: torch.Tensor, kernels: torch.Tensor, kernel_size: int | None = None
) -> torch.Tensor:
    """Filter every pixel of x with its own k×k kernel (zero padding, k odd).

    Args:
        x: (B, C, H, W).
        kernels: (B, k², H, W) shared across channels, or (B, C·k², H, W) per channel with
            channel c using kernel channels ``[c·k², (c+1)·k²)``. Tap ``t = u·k + v`` weights
            ``x[i + u - k//2, j + v - k//2]``. Used as given (no normalisation).
        kernel_size: k; only needed when the channel count fits both layouts.

    Returns:
        (B, C, H, W) in x's memory format, dtype promoted from x and kernels (accumulated in
        at least float32).

    Raises:
        ValueError: on mismatched shapes or a kernel channel count that is neither k² nor
            C·k² for an odd k.
    """
    _check_pair(x, kernels, "dynamic_filter")
    k, per_channel = _filter_layout(x.shape[1], kernels.shape[1], kernel_size)
    if x.numel() == 0:
        return x.new_zeros(x.shape, dtype=accumulation_dtype(x.dtype, kernels.dtype)[0])
    return DynamicFilterFunction.apply(x, kernels, k, per_channel)


def dynamic_upsample(x: torch.Tensor, kernels: torch.Tensor, scale: int) -> torch.Tensor:
    """UDVD's dynamic upsampling: r² per-pixel k×k filters, pixel-shuffled to (B, C, rH, rW).

    Args:
        x: (B, C, H, W) low-resolution input.
        kernels: (B, k²·r², H, W), shared across channels; channel ``t·r² + a·r + q`` is the
            weight of tap ``t = u·k + v`` for output pixel ``(i·r + a, j·r + q)``.
        scale: r, a positive integer.

    Returns:
        (B, C, r·H, r·W) in x's memory format, dtype promoted from x and kernels.

    Raises:
        ValueError: on mismatched shapes, a channel count not divisible by r², or k²
            (= channels / r²) not an odd square.
    """
    _check_pair(x, kernels, "dynamic_upsample")
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"dynamic_upsample: scale must be a positive integer, got {scale!r}")
    r = int(scale)
    ch = kernels.shape[1]
    if ch % (r * r):
        raise ValueError(
            f"dynamic_upsample: kernels have {ch} channels, not a multiple of scale²={r * r} "
            f"(expected k²·r² channels)"
        )
    k = _odd_square_root(ch // (r * r))
    if k is None:
        raise ValueError(
            f"dynamic_upsample: kernels have {ch} channels = {ch // (r * r)}·r² for scale {r}; "
            f"{ch // (r * r)} is not k² for an odd k"
        )
    b, c, h, w = x.shape
    if x.numel() == 0:
        out_dtype = accumulation_dtype(x.dtype, kernels.dtype)[0]
        return x.new_zeros((b, c, h * r, w * r), dtype=out_dtype)
    return DynamicUpsampleFunction.apply(x, kernels, k, r)
