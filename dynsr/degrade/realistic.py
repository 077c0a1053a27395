"""Synthetic "real-world" degradation for training DDet without RealSR pairs.

A first-order degradation in the style of Real-ESRGAN (Wang et al., ICCVW 2021, its
``options/train_realesrnet_x*plus.yml``) and BSRGAN (Zhang et al., ICCV 2021), plus the one
thing camera pairs have and synthetic pairs usually lack: a small sub-pixel misalignment
between the LR and the HR image (RealSR's pairs are registered, but not to the exact pixel;
DDet's content-decoupled module, CDM, is there to correct that). Steps, in order, with the
default range of every random parameter and where it comes from:

1. **Blur** (always): a Gaussian kernel on an odd k x k grid, k uniform over the odd sizes in
   ``kernel_size_range`` [7, 21] (Real-ESRGAN: ``kernel_range`` 7..21). Isotropic with
   probability ``iso_prob`` 0.65, otherwise anisotropic. Real-ESRGAN draws iso 0.45 /
   aniso 0.25 / generalised and plateau Gaussians 0.30 and a sinc kernel 10 % of the time;
   dynsr keeps the two plain Gaussians and their ratio (0.45 / 0.70 = 0.64). Widths
   (standard deviations, HR pixels) uniform in ``blur_sigma`` [0.2, 3.0] (Real-ESRGAN
   ``blur_sigma``); the anisotropic kernel draws its two widths independently there and its
   angle uniformly in [0, pi) (Real-ESRGAN: [-pi, pi], the same set of kernels).
2. **Downsampling** by the scale, by a method drawn uniformly from ``downsample_methods``
   ["bicubic", "bilinear", "area"] (Real-ESRGAN picks area / bilinear / bicubic at random;
   BSRGAN nearest / bilinear / bicubic): MATLAB bicubic (``dynsr.ops.imresize``,
   antialiased), antialiased bilinear (``F.interpolate(antialias=True)``), or the mean of
   every s x s block. All three put LR pixel i at HR position ``s*i + (s-1)/2``, so the only
   misalignment is the deliberate one below. Real-ESRGAN's extra random resize (x0.15 to
   x1.5) and its second-order stage are left out: RealSR's degradation is one optical
   system, and a fixed scale keeps HR and LR patches in register.
3. **Misalignment**: the LR image is resampled at positions moved by (dy, dx), each uniform
   in [-``max_shift``, ``max_shift``] LR pixels (default 0.5; dynsr's choice: registration
   residuals of camera pairs are a fraction of a pixel), with Keys' cubic interpolation
   (a = -0.5, MATLAB's), separably. The HR target is untouched.
4. **Noise** (probability ``noise_prob`` 1.0; Real-ESRGAN always adds noise): Gaussian with
   probability ``gaussian_noise_prob`` 0.5, sigma uniform in ``noise_range`` [1, 30] on the
   0..255 scale; otherwise Poisson-like, ``(Poisson(255 v) / 255 - v) * scale`` with
   ``scale`` uniform in ``poisson_scale_range`` [0.05, 3.0]. Either is the same for the
   three channels ("gray" noise, computed on luma for Poisson) with probability
   ``gray_noise_prob`` 0.4. All four values are Real-ESRGAN's first-order ones (BSRGAN: sigma
   in [2, 25]). The result is clipped to [0, 1] and rounded to 8 bit.
5. **JPEG** (probability ``jpeg_prob`` 1.0; Real-ESRGAN always compresses): quality uniform
   over the integers in ``jpeg_range`` [30, 95] (Real-ESRGAN and BSRGAN), encoded and
   decoded in memory by Pillow (libjpeg, 4:2:0 chroma subsampling, as a camera or a web
   upload would).

Every range is a ``degradation_options`` key of the ``realistic`` training data (see
:mod:`dynsr.train.datasets`). Parameters are drawn by :func:`sample_params` in a fixed
order, all of them whatever the probabilities say, so a generator's state gives the same
parameters on every machine; :func:`apply` applies them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dynsr.degrade import anisotropic_gaussian, blur, isotropic_gaussian
from dynsr.ops import imresize, quantize
from dynsr.ops.resize import cubic

__all__ = [
    "DOWNSAMPLE_METHODS",
    "RealisticOptions",
    "RealisticParams",
    "apply",
    "context",
    "sample_params",
    "subpixel_shift",
]

DOWNSAMPLE_METHODS = ("bicubic", "bilinear", "area")


@dataclass(frozen=True)
class RealisticOptions:
    """Ranges of the realistic degradation (see the module docstring for their sources)."""

    kernel_size_range: tuple[int, int] = (7, 21)
    iso_prob: float = 0.65
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    downsample_methods: tuple[str, ...] = DOWNSAMPLE_METHODS
    max_shift: float = 0.5
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[int, int] = (30, 95)

    @classmethod
    def from_mapping(cls, options: Mapping, where: str = "degradation_options") -> RealisticOptions:
        """Options from a config mapping; unknown keys and bad values raise ValueError."""
        known = {f.name for f in fields(cls)}
        values: dict = {}
        for key, value in options.items():
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown key for the realistic degradation "
                                 f"(known: {', '.join(sorted(known))})")
            values[key] = value
        merged = {f.name: values.get(f.name, getattr(cls, f.name)) for f in fields(cls)}
        for name in ("iso_prob", "noise_prob", "gaussian_noise_prob", "gray_noise_prob",
                     "jpeg_prob"):
            merged[name] = _probability(merged[name], f"{where}.{name}")
        merged["kernel_size_range"] = _range(merged["kernel_size_range"],
                                             f"{where}.kernel_size_range", integer=True, low=1)
        lo, hi = merged["kernel_size_range"]
        if lo == hi and lo % 2 == 0:
            raise ValueError(f"{where}.kernel_size_range: contains no odd size (kernels are "
                             f"centred on a pixel), got {[lo, hi]}")
        for name in ("blur_sigma", "noise_range", "poisson_scale_range"):
            merged[name] = _range(merged[name], f"{where}.{name}")
        merged["jpeg_range"] = _range(merged["jpeg_range"], f"{where}.jpeg_range", integer=True,
                                      low=1, high=100)
        methods = merged["downsample_methods"]
        if isinstance(methods, str):
            methods = [methods]
        methods = tuple(methods)
        if not methods or any(m not in DOWNSAMPLE_METHODS for m in methods):
            given = merged["downsample_methods"]
            raise ValueError(f"{where}.downsample_methods: expected a non-empty list of "
                             f"{', '.join(DOWNSAMPLE_METHODS)}; got {given!r}")
        merged["downsample_methods"] = methods
        shift = merged["max_shift"]
        if isinstance(shift, bool) or not isinstance(shift, int | float) or not 0 <= shift <= 2:
            raise ValueError(f"{where}.max_shift: expected a number in [0, 2] (LR pixels), "
                             f"got {shift!r}")
        merged["max_shift"] = float(shift)
        return cls(**merged)


@dataclass(frozen=True)
class RealisticParams:
    """One draw of the realistic degradation's parameters."""

    kernel: torch.Tensor  # (k, k) float32, sums to 1
    downsample: str  # one of DOWNSAMPLE_METHODS
    shift: tuple[float, float]  # (dy, dx) in LR pixels: LR pixel i samples position i + d
    noise: str  # "none", "gaussian" or "poisson"
    gray_noise: bool
    noise_level: float  # gaussian: sigma on 0..255; poisson: the scale
    jpeg_quality: int | None  # None: no JPEG


def _probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def _range(value: object, name: str, *, integer: bool = False, low: float = 0.0,
           high: float = math.inf) -> tuple:
    kind = int if integer else int | float
    if (not isinstance(value, list | tuple) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, kind) for v in value)
            or not low <= value[0] <= value[1] <= high):
        bounds = f"{low:g} <= low <= high" + ("" if high == math.inf else f" <= {high:g}")
        raise ValueError(f"{name}: expected [low, high] {'integers' if integer else 'numbers'} "
                         f"with {bounds}, got {value!r}")
    return (int(value[0]), int(value[1])) if integer else (float(value[0]), float(value[1]))


def context(options: RealisticOptions, scale: int) -> int:
    """LR pixels of image context each side of a patch that :func:`apply` needs.

    Enough that the patch's pixels do not see the padding of any step: half the largest
    kernel plus the downsampling filter's reach (2s HR pixels for bicubic), in LR pixels, plus
    the interpolation taps of the shift.
    """
    blur_reach = options.kernel_size_range[1] // 2 + 2 * scale
    return math.ceil(blur_reach / scale) + _shift_radius(options.max_shift)


def _shift_radius(max_shift: float) -> int:
    # Keys' cubic reaches 2 pixels from the sampling position, which is up to max_shift away.
    return math.floor(max_shift) + 2


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _choice(gen: torch.Generator, count: int) -> int:
    return min(int(float(torch.rand((), generator=gen, dtype=torch.float64)) * count), count - 1)


def sample_params(options: RealisticOptions, gen: torch.Generator) -> RealisticParams:
    """Draw one set of parameters, always in the same order (see the module docstring)."""
    lo, hi = options.kernel_size_range
    sizes = list(range(lo if lo % 2 else lo + 1, hi + 1, 2))
    size = sizes[_choice(gen, len(sizes))]
    isotropic = _uniform(gen, 0, 1) < options.iso_prob
    sigma1 = _uniform(gen, *options.blur_sigma)
    sigma2 = _uniform(gen, *options.blur_sigma)
    theta = _uniform(gen, 0.0, math.pi)
    if isotropic:
        kernel = isotropic_gaussian(size, sigma1, dtype=torch.float64)
    else:
        kernel = anisotropic_gaussian(size, sigma1**2, sigma2**2, theta, dtype=torch.float64)
    method = options.downsample_methods[_choice(gen, len(options.downsample_methods))]
    shift = (_uniform(gen, -options.max_shift, options.max_shift),
             _uniform(gen, -options.max_shift, options.max_shift))
    noisy = _uniform(gen, 0, 1) < options.noise_prob
    gaussian = _uniform(gen, 0, 1) < options.gaussian_noise_prob
    gray = _uniform(gen, 0, 1) < options.gray_noise_prob
    sigma = _uniform(gen, *options.noise_range)
    poisson_scale = _uniform(gen, *options.poisson_scale_range)
    compress = _uniform(gen, 0, 1) < options.jpeg_prob
    q_lo, q_hi = options.jpeg_range
    quality = q_lo + _choice(gen, q_hi - q_lo + 1)
    return RealisticParams(
        kernel=kernel.to(torch.float32),
        downsample=method,
        shift=shift,
        noise=("gaussian" if gaussian else "poisson") if noisy else "none",
        gray_noise=gray,
        noise_level=sigma if gaussian else poisson_scale,
        jpeg_quality=quality if compress else None,
    )


def _downsample(x: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    if scale == 1:
        return x
    if method == "bicubic":
        return imresize(x, scale=1.0 / scale)
    size = (math.ceil(x.shape[-2] / scale), math.ceil(x.shape[-1] / scale))
    if method == "bilinear":
        return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False,
                             antialias=True)[0]
    if method == "area":
        return F.avg_pool2d(x[None], scale, ceil_mode=True)[0]
    raise ValueError(f"unknown downsampling method {method!r}")


def subpixel_shift(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Resample (C, H, W) ``x`` at positions (i + dy, j + dx): Keys cubic, replicate borders.

    Content moves by (-dy, -dx). Separable: one 1-D pass per axis.
    """
    out = x[None]
    for axis, d in ((-2, dy), (-1, dx)):
        if d == 0:
            continue
        radius = _shift_radius(abs(d))
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        weights = cubic(taps - d)
        weights = (weights / weights.sum()).to(x.dtype)
        channels = out.shape[1]
        if axis == -2:
            kernel = weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
            padded = F.pad(out, (0, 0, radius, radius), mode="replicate")
        else:
            kernel = weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
            padded = F.pad(out, (radius, radius, 0, 0), mode="replicate")
        out = F.conv2d(padded, kernel, groups=channels)
    return out[0]


def _add_noise(x: torch.Tensor, params: RealisticParams, gen: torch.Generator) -> torch.Tensor:
    if params.noise == "none":
        return x
    channels = 1 if params.gray_noise else x.shape[0]
    if params.noise == "gaussian":
        noise = torch.randn((channels, *x.shape[1:]), generator=gen) * (params.noise_level / 255)
    else:
        # Photon-count-like noise: counts 255 v, so its variance grows with the brightness.
        base = quantize(x)
        if params.gray_noise:
            base = (0.299 * base[0:1] + 0.587 * base[1:2] + 0.114 * base[2:3]).clamp(0, 1)
        counts = torch.poisson(base * 255, generator=gen)
        noise = (counts / 255 - base) * params.noise_level
    return x + noise  # a (1, h, w) noise broadcasts over the channels: gray noise


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode (3, h, w) 8-bit-grid pixels as JPEG at ``quality`` and decode them again."""
    hwc = (x.permute(1, 2, 0) * 255 + 0.5).floor().clamp(0, 255).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(hwc), "RGB").save(buffer, format="JPEG",
                                                             quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        pixels = np.asarray(decoded.convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).to(torch.float32) / 255


def apply(hr: torch.Tensor, scale: int, params: RealisticParams,
          gen: torch.Generator) -> torch.Tensor:
    """Degrade (3, H, W) ``hr`` (H, W multiples of ``scale``) with ``params``: (3, H/s, W/s).

    ``gen`` draws the noise (after :func:`sample_params` drew the parameters from it). The
    result is in [0, 1] on the 8-bit grid. Borders: blur replicate-pads, bicubic mirrors; a
    caller that wants border-free pixels gives :func:`context` LR pixels of extra image.
    """
    x = blur(hr, params.kernel)
    x = _downsample(x, scale, params.downsample)
    x = subpixel_shift(x, *params.shift)
    x = quantize(_add_noise(x, params, gen))
    if params.jpeg_quality is not None:
        x = _jpeg(x, params.jpeg_quality)
    return x
