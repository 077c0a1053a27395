"""Making LR images from HR images: blur, downsampling, 8-bit quantisation, noise.

The default of :func:`degrade` is the degradation of UDVD's Eq. 1 as SRMD implements it
(SRMD ``TrainingCodes/degradation_model.m``)::

    LR = quantize8(bicubic_down_s(imfilter(HR, k, 'replicate'))) + N(0, (sigma/255)^2)

* Blur is *correlation* with the kernel, like MATLAB's ``imfilter`` (and ``F.conv2d``); for
  the point-symmetric Gaussians this is the same as convolution. Borders are replicate-padded
  (UDVD / SRMD); ``padding="symmetric"`` gives scipy's ``correlate`` default ('reflect',
  half-sample mirror), which DIV2KRK's generator used.
* Downsampling is MATLAB-exact bicubic (``dynsr.ops.imresize(x, 1/s)``) or direct
  subsampling (every s-th pixel, see :func:`subsample`). Output size ``ceil(H/s)`` either way.
* The clean LR is rounded to the 8-bit grid (``floor(255 v + 0.5) / 255`` after clamping) and
  AWGN is added *after* that, as SRMD does. The noisy result is neither clipped nor
  re-quantised by default (SRMD trains on it as is: values may leave [0, 1] and sit off the
  8-bit grid); ``clip=True`` clamps it to [0, 1] and ``requantize=True`` clamps and rounds it
  to 8 bit (what saving the LR as a PNG does).
* Noise levels are on the 0..255 scale. Randomness comes only from ``seed`` or ``generator``.

Spatially variant degradations (UDVD Table 3) use per-pixel fields:

* a blur *width map* (B, 1, H, W) on the **HR grid** (blur happens on the HR image), or
  per-pixel kernels (B, k*k, H, W), also on the HR grid, applied with
  ``dynsr.ops.dynamic_filter``;
* a *noise map* (B, 1, h, w) on the **LR grid** (noise is added to the LR image).

``dynsr.degrade.downsample_map`` brings an HR-grid width map to the LR grid for the
degradation map (block average: for a linear ramp this is the value at each LR pixel's centre).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dynsr.degrade.kernels import (
    GeneratorLike,
    isotropic_gaussian,
    isotropic_gaussian_field,
    make_generator,
)
from dynsr.ops import dynamic_filter, imresize
from dynsr.ops import quantize as quantize_8bit

__all__ = [
    "PADDING_MODES",
    "add_noise",
    "bicubic_downsample",
    "blur",
    "degrade",
    "gaussian_blur",
    "separable_blur",
    "subsample",
]

PADDING_MODES = ("replicate", "symmetric", "reflect", "zeros", "circular")

# Per-pixel blur builds (B, k*k, rows, W) kernels one band of rows at a time; this bounds the
# band to about 64 MB of float32 kernels whatever the image size.
_PER_PIXEL_BAND_ELEMENTS = 16 * 2**20
# Above this many bytes of unfolded image (k² copies of it), float64 blur sums shifted
# images instead of convolving (:func:`_correlate`).
_UNFOLD_BYTES = 256 * 2**20


def _as_batch(x: torch.Tensor, name: str = "image") -> tuple[torch.Tensor, bool]:
    """(B, C, H, W) view of a (C, H, W) or (B, C, H, W) float tensor, and whether it was 3-D."""
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.dim() == 3:
        return x[None], True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"{name} must be (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return scale


def _mirror_indices(before: int, after: int, length: int, device) -> torch.Tensor:
    # Half-sample symmetric (MATLAB 'symmetric', scipy 'reflect'): ... 1 0 | 0 1 ... n-1 | n-1 ...
    idx = torch.arange(-before, length + after, device=device)
    idx = torch.remainder(idx, 2 * length)
    return torch.where(idx >= length, 2 * length - 1 - idx, idx)


def _pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str):
    if mode not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {mode!r}")
    if mode == "symmetric":
        rows = _mirror_indices(top, bottom, x.shape[-2], x.device)
        cols = _mirror_indices(left, right, x.shape[-1], x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    torch_mode = "constant" if mode == "zeros" else mode
    return F.pad(x, (left, right, top, bottom), mode=torch_mode)


def _blur_per_pixel(xb: torch.Tensor, kernels: torch.Tensor, padding: str) -> torch.Tensor:
    """Spatially variant correlation, (B, C, H, W) by (B, k*k, H, W) kernels (odd k)."""
    batch, _, height, width = xb.shape
    taps = kernels.shape[1]
    size = round(taps**0.5)
    if size * size != taps or size % 2 == 0:
        raise ValueError(f"per-pixel kernels need an odd square number of channels, got {taps}")
    if kernels.shape[0] not in (1, batch) or tuple(kernels.shape[-2:]) != (height, width):
        raise ValueError(f"per-pixel kernels {tuple(kernels.shape)} do not fit the image "
                         f"{tuple(xb.shape)}: need (B, k*k, H, W) on the image's grid")
    pad = size // 2
    # dynamic_filter zero-pads by k//2 itself; padding the image first (with the wanted mode)
    # and cropping makes the border taps read replicated pixels instead of zeros.
    xp = _pad(xb, pad, pad, pad, pad, padding)
    out = dynamic_filter(xp, _pad_kernels(kernels.to(xb.dtype), batch, pad))
    return out[..., pad:pad + height, pad:pad + width]


def _pad_kernels(kernels: torch.Tensor, batch: int, pad: int) -> torch.Tensor:
    """Per-pixel kernels (Bk, k*k, H, W) zero-padded by ``pad`` into a contiguous tensor.

    The pad ring only yields outputs that are cropped away, so zeros do. Writing into a fresh
    buffer also makes the result tap-major contiguous whatever the input's layout (F.pad would
    keep a permuted, pixel-major layout, which is slow to filter with).
    """
    _, taps, height, width = kernels.shape
    padded = kernels.new_zeros(batch, taps, height + 2 * pad, width + 2 * pad)
    padded[..., pad:pad + height, pad:pad + width] = kernels
    return padded


def blur(x: torch.Tensor, kernel: torch.Tensor, padding: str = "replicate") -> torch.Tensor:
    """Blur each channel of ``x`` with ``kernel`` (correlation, as MATLAB ``imfilter``).

    ``x``: (C, H, W) or (B, C, H, W). ``kernel``:

    * (kh, kw): one kernel for every image and channel;
    * (B, kh, kw): one kernel per image (B = 1 is shared by the batch);
    * (B, k*k, H, W): one k x k kernel per pixel (spatially variant, odd k, taps row-major
      ``u*k + v``), applied with ``dynsr.ops.dynamic_filter``.

    Output ``y[i, j] = sum_{u,v} K[u, v] x[i + u - cu, j + v - cv]`` with the origin
    ``(cu, cv) = ((kh-1)//2, (kw-1)//2)`` (MATLAB's origin; the middle tap for odd sizes).
    Borders are padded with ``padding`` (one of :data:`PADDING_MODES`). Kernels are applied
    as given (not normalised). All channels go through one grouped convolution.
    """
    xb, was_3d = _as_batch(x)
    batch, channels, height, width = xb.shape
    kernel = kernel.to(device=xb.device, dtype=xb.dtype)
    if kernel.dim() == 4:
        out = _blur_per_pixel(xb, kernel, padding)
        return out[0] if was_3d else out
    if kernel.dim() not in (2, 3):
        raise ValueError(f"kernel must be (k, k), (B, k, k) or (B, k*k, H, W), "
                         f"got shape {tuple(kernel.shape)}")
    if kernel.dim() == 3 and kernel.shape[0] == 1:
        kernel = kernel[0]  # one kernel for the whole batch
    kh, kw = kernel.shape[-2:]
    xp = _pad(xb, (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2, padding)
    if kernel.dim() == 2:
        planes = xp.reshape(batch * channels, 1, *xp.shape[-2:])
        out = _correlate(planes, kernel[None, None], groups=1)
    else:
        if kernel.shape[0] != batch:
            raise ValueError(f"got {kernel.shape[0]} kernels for a batch of {batch} images")
        # Depthwise: image b's channels all use kernel b, in one grouped convolution.
        weight = kernel.repeat_interleave(channels, dim=0)[:, None]
        out = _correlate(xp.reshape(1, batch * channels, *xp.shape[-2:]), weight,
                         groups=batch * channels)
    out = out.reshape(batch, channels, height, width)
    return out[0] if was_3d else out


def _correlate(planes: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``F.conv2d(planes, weight, groups=groups)`` (valid). Float64 convolution has no
    oneDNN path: PyTorch unfolds the image into k² copies (5.6 GB and 30 s for a 500×480 RGB
    image and DIV2KRK's 31×31 x4 kernel). Past :data:`_UNFOLD_BYTES` of such copies, the
    shifted images are summed one tap at a time instead: 1.6 s, two images of memory, the
    same values to float64 rounding (max difference 0 on an Intel Xeon, 1.1e-13 on values up
    to 308 on an AMD EPYC: the taps are summed in another order)."""
    kh, kw = weight.shape[-2:]
    unfolded = kh * kw * planes.numel() * planes.element_size()
    if planes.dtype != torch.float64 or unfolded <= _UNFOLD_BYTES:
        return F.conv2d(planes, weight, groups=groups)
    rows, cols = planes.shape[-2] - kh + 1, planes.shape[-1] - kw + 1
    out = planes.new_zeros(*planes.shape[:-2], rows, cols)
    if groups == 1:  # one kernel for every plane: scalar taps
        taps = weight[0, 0].tolist()
        for u in range(kh):
            for v in range(kw):
                out.add_(planes[..., u:u + rows, v:v + cols], alpha=taps[u][v])
        return out
    taps = weight[:, 0]  # (groups, kh, kw): plane g's own kernel
    for u in range(kh):
        for v in range(kw):
            out.addcmul_(planes[..., u:u + rows, v:v + cols], taps[:, u, v, None, None])
    return out


def separable_blur(x: torch.Tensor, taps: torch.Tensor, padding: str = "replicate",
                   channels_last: bool = False) -> torch.Tensor:
    """Blur each channel of ``x`` (C, H, W) or (B, C, H, W) by the outer product of the 1-D
    ``taps`` (odd length) with itself: :func:`blur` with ``taps[:, None] * taps[None, :]``,
    as two 1-D passes (float rounding aside). Runs as grouped channels_last convolutions:
    oneDNN's single-channel path is ~8× slower for such thin kernels (15 taps, 3×768²,
    2 threads: 6 against 53 ms a pass). The result is contiguous, or left channels_last as
    the convolutions make it with ``channels_last`` (a copy saved for channels_last users)."""
    xb, was_3d = _as_batch(x)
    size = taps.shape[-1]
    if taps.dim() != 1 or size % 2 == 0:
        raise ValueError(f"taps must be 1-D of odd length, got shape {tuple(taps.shape)}")
    channels, pad = xb.shape[1], size // 2
    taps = taps.to(device=xb.device, dtype=xb.dtype)
    xp = _pad(xb, pad, pad, pad, pad, padding).contiguous(memory_format=torch.channels_last)
    rows = taps.reshape(1, 1, size, 1).expand(channels, 1, size, 1).contiguous()
    out = F.conv2d(F.conv2d(xp, rows, groups=channels), rows.transpose(-2, -1).contiguous(),
                   groups=channels)
    if not channels_last:
        out = out.contiguous()
    return out[0] if was_3d else out


def gaussian_blur(
    x: torch.Tensor,
    width: float | torch.Tensor,
    size: int = 15,
    padding: str = "replicate",
) -> torch.Tensor:
    """Blur with isotropic Gaussian(s) of standard deviation ``width`` on a size x size grid.

    ``width``: a number (one kernel), a (B,) tensor (one per image), or a width map
    (B, 1, H, W) / (1, 1, H, W) on the image's grid (one kernel per pixel). The per-pixel
    kernels are built one band of rows at a time (bounded memory) and applied with
    ``dynsr.ops.dynamic_filter``; a constant map gives the same result as a number.
    """
    xb, was_3d = _as_batch(x)
    if not isinstance(width, torch.Tensor) or width.dim() == 0:
        out = blur(xb, isotropic_gaussian(size, width, dtype=xb.dtype, device=xb.device),
                   padding)
    elif width.dim() == 1:
        out = blur(xb, isotropic_gaussian(size, width.to(xb.device), dtype=xb.dtype), padding)
    elif width.dim() == 4:
        out = _gaussian_blur_map(xb, width.to(device=xb.device, dtype=xb.dtype), size, padding)
    else:
        raise ValueError(f"width must be a number, (B,) or (B, 1, H, W), "
                         f"got shape {tuple(width.shape)}")
    return out[0] if was_3d else out


def _gaussian_blur_map(xb: torch.Tensor, width_map: torch.Tensor, size: int, padding: str):
    batch, _, height, width = xb.shape
    if width_map.shape[1] != 1 or width_map.shape[0] not in (1, batch) or tuple(
            width_map.shape[-2:]) != (height, width):
        raise ValueError(f"width map {tuple(width_map.shape)} does not fit the image "
                         f"{tuple(xb.shape)}: need (B, 1, H, W) on the HR grid")
    if size % 2 == 0:
        raise ValueError(f"per-pixel blur needs an odd kernel size, got {size}")
    pad = size // 2
    xp = _pad(xb, pad, pad, pad, pad, padding)
    rows_per_band = max(1, _PER_PIXEL_BAND_ELEMENTS // (batch * size * size * (width + 2 * pad)))
    bands = []
    for top in range(0, height, rows_per_band):
        rows = min(rows_per_band, height - top)
        widths = width_map[:, :, top:top + rows].to(xb.dtype)  # (Bw, 1, rows, W)
        kernels = isotropic_gaussian_field(widths, size)  # (Bw, k*k, rows, W)
        band = dynamic_filter(xp[:, :, top:top + rows + 2 * pad], _pad_kernels(kernels, batch, pad))
        bands.append(band[..., pad:pad + rows, pad:pad + width])
    return torch.cat(bands, dim=-2)


def bicubic_downsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """MATLAB ``imresize(x, 1/scale, 'bicubic')`` (antialiased); output ``ceil(H/scale)``."""
    scale = _check_scale(scale)
    return imresize(x, scale=1.0 / scale) if scale > 1 else x


def subsample(x: torch.Tensor, scale: int, offset: int = 0) -> torch.Tensor:
    """Direct downsampling: keep pixels ``offset, offset + s, offset + 2s, ...`` in each axis.

    Offset 0 is the field's convention: KernelGAN / DIV2KRK (``imresize`` with a numeric
    kernel keeps rows ``round(linspace(0, H - s, H / s))`` = 0, s, 2s, ... of the correlated
    image) and SRMD / KAIR (``x[0::s]``). With a middle-centred kernel (SRMD / KAIR), LR
    pixel i then sits on HR pixel ``s*i``, which is ``(s-1)/2`` HR pixels up-left of MATLAB
    bicubic's LR grid (0.5 px at x2, 1 at x3, 1.5 at x4). DIV2KRK's kernels have their
    centre of mass ``(s-1)/2`` down-right of the middle tap instead, which lines the grids up
    (:func:`dynsr.degrade.div2krk_kernel`, KernelGAN's estimates); for odd s and a centred
    kernel, ``offset=(s-1)//2`` does it exactly. Output size ``ceil((H - offset)/s)``
    (``ceil(H/s)`` for offset 0, as bicubic).
    """
    scale = _check_scale(scale)
    if not 0 <= offset < scale:
        raise ValueError(f"offset must be in [0, {scale}), got {offset}")
    return x[..., offset::scale, offset::scale]


def _noise_std(sigma: float | torch.Tensor, xb: torch.Tensor) -> float | torch.Tensor:
    """sigma (0..255 scale) as a number or a tensor broadcastable to (B, C, h, w), on [0, 1]."""
    if not isinstance(sigma, torch.Tensor):
        sigma = float(sigma)
        if sigma < 0:
            raise ValueError(f"noise sigma must be non-negative, got {sigma}")
        return sigma / 255.0
    sigma = sigma.to(device=xb.device, dtype=xb.dtype)
    if bool((sigma < 0).any()):
        raise ValueError("noise sigma must be non-negative")
    if sigma.dim() == 0:
        return sigma / 255.0
    if sigma.dim() == 1 and sigma.shape[0] in (1, xb.shape[0]):
        return sigma.view(-1, 1, 1, 1) / 255.0
    if sigma.dim() == 4 and sigma.shape[1] == 1 and sigma.shape[0] in (1, xb.shape[0]):
        if tuple(sigma.shape[-2:]) != tuple(xb.shape[-2:]):
            raise ValueError(f"noise map is {tuple(sigma.shape[-2:])} but the image it is added "
                             f"to is {tuple(xb.shape[-2:])}: noise maps live on the LR grid")
        return sigma / 255.0
    raise ValueError(f"noise sigma must be a number, (B,) or (B, 1, h, w), "
                     f"got shape {tuple(sigma.shape)}")


def add_noise(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    generator: GeneratorLike = None,
) -> torch.Tensor:
    """``x`` plus white Gaussian noise of standard deviation ``sigma / 255``.

    ``sigma`` (0..255 scale): a number, a (B,) tensor (one level per image) or a noise map
    (B, 1, H, W) of x's size (one level per pixel, shared by the channels). The noise is
    drawn on the generator's device (CPU unless you pass another) in float32 (float64 for
    float64 images), so a seed gives the same noise on every device. No clipping.
    """
    xb, was_3d = _as_batch(x)
    std = _noise_std(sigma, xb)
    gen = make_generator(generator)
    draw_dtype = torch.float64 if xb.dtype == torch.float64 else torch.float32
    noise = torch.randn(xb.shape, generator=gen, dtype=draw_dtype, device=gen.device)
    out = xb + noise.to(device=xb.device, dtype=xb.dtype) * std
    return out[0] if was_3d else out


def degrade(
    hr: torch.Tensor,
    scale: int,
    kernel: torch.Tensor | None = None,
    *,
    width: float | torch.Tensor | None = None,
    kernel_size: int = 15,
    noise: float | torch.Tensor = 0.0,
    downsample: str = "bicubic",
    offset: int = 0,
    quantize: bool = True,
    clip: bool = False,
    requantize: bool = False,
    padding: str = "replicate",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Make an LR image: blur -> downsample -> 8-bit quantisation -> AWGN (see module doc).

    * ``hr``: (C, H, W) or (B, C, H, W) in [0, 1].
    * Blur: ``kernel`` ((k, k), (B, k, k) or per-pixel (B, k*k, H, W) on the HR grid, see
      :func:`blur`) *or* ``width``: isotropic Gaussian standard deviation(s) on a
      ``kernel_size`` grid (number, (B,), or HR-grid width map (B, 1, H, W)). Neither: no blur.
    * ``downsample``: ``"bicubic"`` (MATLAB imresize, UDVD/SRMD) or ``"direct"`` (every s-th
      pixel from ``offset``, DIV2KRK/KernelGAN; see :func:`subsample`).
    * ``quantize``: round the clean LR to the 8-bit grid before the noise (SRMD).
    * ``noise``: sigma on the 0..255 scale, a number, (B,), or an LR-grid map (B, 1, h, w).
    * After the noise: nothing by default (SRMD / UDVD Eq. 1), ``clip=True`` clamps to [0, 1],
      ``requantize=True`` clamps and rounds to 8 bit.
    * ``seed`` or ``generator`` (not both) drives the noise; same seed, same bytes.
    """
    scale = _check_scale(scale)
    hr_b, was_3d = _as_batch(hr, "hr")
    if kernel is not None and width is not None:
        raise ValueError("give a kernel or a width, not both")
    if seed is not None and generator is not None:
        raise ValueError("give a seed or a generator, not both")
    if downsample not in ("bicubic", "direct"):
        raise ValueError(f"downsample must be 'bicubic' or 'direct', got {downsample!r}")
    if downsample == "bicubic" and offset != 0:
        raise ValueError("offset applies to direct subsampling only")

    x = hr_b
    if kernel is not None:
        x = blur(x, kernel, padding)
    elif width is not None:
        x = gaussian_blur(x, width, kernel_size, padding)
    x = bicubic_downsample(x, scale) if downsample == "bicubic" else subsample(x, scale, offset)
    if quantize:
        x = quantize_8bit(x)
    noisy = isinstance(noise, torch.Tensor) or float(noise) != 0.0
    if noisy:
        x = add_noise(x, noise, seed if generator is None else generator)
    if requantize:
        x = quantize_8bit(x)
    elif clip:
        x = x.clamp(0.0, 1.0)
    return x[0] if was_3d else x
