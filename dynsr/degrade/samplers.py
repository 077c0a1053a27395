"""Random degradations of HR training patches: each sampler turns an HR crop (with context) into
the LR patch and whatever else the model is told or must predict.

A sampler has ``context(scale)``, the LR pixels of image context it needs on each side so
that no LR pixel of the patch sees a padded border, and ``__call__(hr, scale, border, gen)``
on the extended crop, returning a dict with ``"lr"`` (trimmed by ``border`` LR pixels) and
its ``extra_keys``. Every random draw comes from ``gen``, so a sample is a function of its
generator's seed (:mod:`dynsr.train.datasets` seeds one per sample number).

* :class:`BicubicSampler`: MATLAB bicubic, 8-bit (DyConvSR).
* :class:`VariationalSampler`: UDVD's Eq. 1, optionally spatially variant (UDVD).
* :class:`RealisticSampler`: :mod:`dynsr.degrade.realistic` (DDet without real pairs).
* :class:`BlindSampler`: the degradation estimator's data: isotropic, anisotropic and
  DIV2KRK-style kernels, spatially blended, noise fields, and the per-pixel degradation map
  UDVD would need as the target.

Spatially variant fields (:class:`RandomField`). UDVD's paper trains on Eq. 1 with uniformly
sampled, spatially invariant parameters and tests spatial variation with width and noise
rising linearly from left to right (Table 3: 0.2 -> 2 and 5 -> 50). dynsr's fields are, each
with probability 1/2,

* a **ramp**: linear along a random direction (angle uniform in [0, 2 pi)), with its two end
  values drawn uniformly from the range and reached at the patch's extreme corners along
  that direction (UDVD's test is the horizontal case); or
* a **smooth field**: bilinear interpolation of a 3 x 3 grid of values drawn uniformly from
  the range, the grid spanning the patch (hills, valleys and saddles).

Both stay inside the range on the patch (ramps are clamped to it in the context margin).
A field is a function of the continuous position, evaluated at HR pixel centres for the blur
(on the HR grid, where the blur happens) and at LR pixel centres (HR position
``s*i + (s-1)/2``) for the returned maps and the noise: for a ramp that is exactly the block
average (:func:`dynsr.degrade.downsample_map`), for the bilinear field equal to it inside
each grid cell.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dynsr.degrade import realistic
from dynsr.degrade.degradation_map import (
    PCA_KERNEL_SIZE,
    bicubic_filter,
    blur_kernels_by,
    is_blur_kernel,
    kernel_code,
    load_pca_basis,
    udvd_kernel_from_direct,
)
from dynsr.degrade.kernels import (
    DIV2KRK_SIZE,
    anisotropic_gaussian,
    div2krk_kernel,
    isotropic_gaussian,
    isotropic_gaussian_field,
    pad_kernel,
    sample_anisotropic_params,
)
from dynsr.degrade.pipeline import add_noise, bicubic_downsample, blur, degrade, subsample
from dynsr.ops import imresize, quantize

__all__ = [
    "KERNEL_FAMILIES",
    "BicubicSampler",
    "BlindOptions",
    "BlindSampler",
    "RandomField",
    "RealisticSampler",
    "VariationalOptions",
    "VariationalSampler",
    "trim",
    "uniform",
]


def trim(x: torch.Tensor, border: int) -> torch.Tensor:
    """``x`` without ``border`` pixels on each side."""
    return x[..., border:x.shape[-2] - border, border:x.shape[-1] - border] if border else x


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    """One float64 draw, uniform in [low, high)."""
    return low + (high - low) * float(torch.rand((), generator=gen, dtype=torch.float64))



class BicubicSampler:
    """DyConvSR: LR = 8-bit quantised MATLAB bicubic, exactly as ``dynsr eval`` makes it."""

    extra_keys: tuple[str, ...] = ()

    def context(self, scale: int) -> int:
        return 2  # bicubic reaches 2s HR pixels from an LR pixel's centre

    def __call__(self, hr: torch.Tensor, scale: int, border: int,
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
        return {"lr": trim(quantize(imresize(hr, scale=1.0 / scale)), border)}


@dataclass(frozen=True)
class VariationalOptions:
    """UDVD's Eq. 1 ranges (paper Sec. 4.1) and the share of spatially variant samples."""

    width_range: tuple[float, float] = (0.2, 3.0)
    noise_range: tuple[float, float] = (0.0, 75.0)
    kernel_size: int = 15
    spatially_variant: float = 0.0

    @classmethod
    def from_mapping(cls, options: Mapping, where: str) -> VariationalOptions:
        known = ("width_range", "noise_range", "kernel_size", "spatially_variant")
        for key in options:
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown key for the variational degradation "
                                 f"(known: {', '.join(known)})")
        ranges = {}
        for name in ("width_range", "noise_range"):
            value = options.get(name, getattr(cls, name))
            if (not isinstance(value, list | tuple) or len(value) != 2
                    or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
                    or not 0 <= value[0] <= value[1]):
                raise ValueError(f"{where}.{name}: expected [low, high] with 0 <= low <= high, "
                                 f"got {value!r}")
            ranges[name] = (float(value[0]), float(value[1]))
        size = options.get("kernel_size", cls.kernel_size)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"{where}.kernel_size: expected an odd positive int, got {size!r}")
        share = options.get("spatially_variant", cls.spatially_variant)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"{where}.spatially_variant: expected a probability in [0, 1], "
                             f"got {share!r}")
        return cls(ranges["width_range"], ranges["noise_range"], size, float(share))


@dataclass(frozen=True)
class RandomField:
    """A random scalar field over the patch, a function of normalised position in [0, 1]^2."""

    low: float
    high: float
    grid: torch.Tensor | None  # (3, 3) values for a smooth field, None for a ramp
    angle: float = 0.0
    start: float = 0.0
    end: float = 0.0

    @classmethod
    def sample(cls, gen: torch.Generator, low: float, high: float) -> RandomField:
        if uniform(gen, 0, 1) < 0.5:
            angle = uniform(gen, 0, 2 * math.pi)
            return cls(low, high, None, angle, uniform(gen, low, high), uniform(gen, low, high))
        grid = low + (high - low) * torch.rand(3, 3, generator=gen, dtype=torch.float64)
        return cls(low, high, grid.to(torch.float32))

    def __call__(self, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """Values (len(ys), len(xs)) at normalised rows ``ys`` and columns ``xs``."""
        if self.grid is None:
            cos, sin = math.cos(self.angle), math.sin(self.angle)
            # Projection on the direction, scaled to [-1, 1] between the patch's extreme corners.
            t = ((xs[None, :] - 0.5) * cos + (ys[:, None] - 0.5) * sin) / (
                0.5 * (abs(cos) + abs(sin)))
            values = self.start + (self.end - self.start) * (t + 1) / 2
            return values.clamp(self.low, self.high)
        grid = torch.stack(torch.broadcast_tensors(xs[None, :] * 2 - 1, ys[:, None] * 2 - 1), -1)
        return F.grid_sample(self.grid[None, None], grid[None], mode="bilinear",
                             padding_mode="border", align_corners=True)[0, 0]


class VariationalSampler:
    """UDVD Eq. 1: isotropic Gaussian blur, bicubic down, 8-bit quantisation, AWGN (unclipped)."""

    extra_keys = ("blur", "noise")

    def __init__(self, options: VariationalOptions) -> None:
        self.options = options
        self.maps = options.spatially_variant > 0  # maps for every sample: one shape per dataset

    def context(self, scale: int) -> int:
        return math.ceil((self.options.kernel_size // 2 + 2 * scale) / scale)

    def __call__(self, hr: torch.Tensor, scale: int, border: int,
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
        opts = self.options
        patch = hr.shape[-1] - 2 * border * scale
        lr_size = patch // scale
        variant = uniform(gen, 0, 1) < opts.spatially_variant
        if variant:
            width_field = RandomField.sample(gen, *opts.width_range)
            noise_field = RandomField.sample(gen, *opts.noise_range)
            # HR pixel centres of the extended crop, normalised to the inner patch.
            hr_pos = (torch.arange(hr.shape[-1], dtype=torch.float32) - border * scale + 0.5)
            hr_pos = hr_pos / patch
            lr_pos = (torch.arange(lr_size, dtype=torch.float32) + 0.5) / lr_size
            width_hr = width_field(hr_pos, hr_pos)[None, None]
            blur = width_field(lr_pos, lr_pos)[None]
            noise = noise_field(lr_pos, lr_pos)[None]
        else:
            width = uniform(gen, *opts.width_range)
            sigma = uniform(gen, *opts.noise_range)
            width_hr = width
            blur = torch.tensor(width, dtype=torch.float32)
            noise = torch.tensor(sigma, dtype=torch.float32)
            if self.maps:
                blur = blur.expand(1, lr_size, lr_size).clone()
                noise = noise.expand(1, lr_size, lr_size).clone()
        if isinstance(width_hr, torch.Tensor):
            kernels = isotropic_gaussian_field(width_hr, opts.kernel_size)
            clean = degrade(hr, scale, kernel=kernels)
        else:
            clean = degrade(hr, scale, width=width_hr, kernel_size=opts.kernel_size)
        sigma_arg = noise[None] if noise.dim() == 3 else noise
        lr = add_noise(trim(clean, border), sigma_arg, generator=gen)
        return {"lr": lr, "blur": blur, "noise": noise}


class RealisticSampler:
    """DDet without RealSR pairs: :mod:`dynsr.degrade.realistic`."""

    extra_keys: tuple[str, ...] = ()

    def __init__(self, options: realistic.RealisticOptions) -> None:
        self.options = options

    def context(self, scale: int) -> int:
        return realistic.context(self.options, scale)

    def __call__(self, hr: torch.Tensor, scale: int, border: int,
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
        params = realistic.sample_params(self.options, gen)
        # JPEG runs on the extended LR too, so the patch's blocks see real neighbours.
        return {"lr": trim(realistic.apply(hr, scale, params, gen), border)}


# --------------------------------------------------------------------------------------------
# The degradation estimator's data: what UDVD should be told, per LR pixel

KERNEL_FAMILIES = ("isotropic", "anisotropic", "direct")


@dataclass(frozen=True)
class BlindOptions:
    """The degradations the estimator learns to read (keys of ``degradation_options``).

    ``families``: probability of each kernel family, in the order of
    :data:`KERNEL_FAMILIES`: isotropic Gaussians of ``width_range`` (UDVD's Eq. 1),
    anisotropic Gaussians from SRMD's distribution (variances in ``lambda_range``), both
    followed by MATLAB bicubic, and ``direct``: DIV2KRK-style random kernels followed by
    keeping every s-th pixel (x2 and x4 only; at x3 its share goes to the other two).
    ``spatially_variant``: share of samples whose kernel blends two kernels of the family
    with a random field, and whose noise is a random field. Noise sigma: 0 with probability
    ``noise_zero``, uniform on [0, ``low_noise``] with ``noise_low``, else uniform on
    ``noise_range``. ``as_file``: share of LR patches clamped and rounded to 8 bit after the
    noise (what an image file holds); the rest stay unclipped (SRMD / UDVD's test protocol).
    """

    families: tuple[float, float, float] = (0.4, 0.3, 0.3)
    width_range: tuple[float, float] = (0.2, 3.0)
    lambda_range: tuple[float, float] = (0.1, 10.0)
    noise_range: tuple[float, float] = (0.0, 75.0)
    noise_zero: float = 0.1
    noise_low: float = 0.3
    low_noise: float = 10.0
    spatially_variant: float = 0.3
    as_file: float = 0.5

    @classmethod
    def from_mapping(cls, options: Mapping, where: str) -> BlindOptions:
        values = {}
        for key, value in options.items():
            if key not in cls.__dataclass_fields__:
                raise ValueError(f"{where}.{key}: unknown key for the blind degradation "
                                 f"(known: {', '.join(cls.__dataclass_fields__)})")
            default = getattr(cls, key)
            if isinstance(default, tuple):
                if (not isinstance(value, list | tuple) or len(value) != len(default)
                        or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                               for v in value)):
                    raise ValueError(f"{where}.{key}: expected {len(default)} non-negative "
                                     f"numbers, got {value!r}")
                values[key] = tuple(float(v) for v in value)
            else:
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{where}.{key}: expected a non-negative number, "
                                     f"got {value!r}")
                values[key] = float(value)
        options = cls(**values)
        if sum(options.families) <= 0:
            raise ValueError(f"{where}.families: the probabilities sum to 0")
        return options


def _choice(gen: torch.Generator, weights: Sequence[float]) -> int:
    total = sum(weights)
    draw = uniform(gen, 0.0, total)
    for index, weight in enumerate(weights):
        draw -= weight
        if draw < 0:
            return index
    return max(i for i, w in enumerate(weights) if w > 0)


@functools.lru_cache(maxsize=8)
def _direct_code_operator(scale: int, offset: float, size: int) -> torch.Tensor:
    """(15, size²) matrix mapping a direct kernel (centre of mass ``offset`` down-right of its
    middle tap) to the least-squares code of :func:`udvd_kernel_from_direct`, computed once
    per grid instead of one ``lstsq`` per sample (its non-negative fallback is not linear)."""
    basis = load_pca_basis().to(torch.float64)
    b = bicubic_filter(scale, (offset, offset))
    blurred = blur_kernels_by(basis.reshape(-1, PCA_KERNEL_SIZE, PCA_KERNEL_SIZE), b)
    full = max(blurred.shape[-1], size)
    design = pad_kernel(blurred, full).reshape(basis.shape[0], -1).T  # (full², 15)
    operator = torch.linalg.pinv(design)  # (15, full²)
    # Keep only the columns of the taps a size x size kernel (padded to full) occupies.
    index = pad_kernel(torch.arange(1, size * size + 1, dtype=torch.float64)
                       .reshape(size, size), full).reshape(-1)
    return operator[:, index > 0].contiguous()


class BlindSampler:
    """LR patches of random (optionally spatially varying) blur and noise, with the target
    map: per LR pixel, the 15 PCA code values of the kernel UDVD should be told and
    ``sigma / 255`` (``"dmap"``, (16, h, w)), as :func:`dynsr.degrade.degradation_map` builds
    it from the true degradation. Isotropic and anisotropic kernels are UDVD's own
    convention (blur, then bicubic); a direct kernel k is told as the code of the k_u with
    ``k_u * b ≈ k`` (:func:`dynsr.degrade.udvd_kernel_from_direct`). A blend of two kernels
    by a field t (per HR pixel ``(1 − t) k_a + t k_b``) is exactly the blend of the two
    blurred images, and its code the blend of the two codes (the code is linear)."""

    extra_keys = ("dmap",)

    def __init__(self, options: BlindOptions, kernel_size: int = PCA_KERNEL_SIZE) -> None:
        self.options = options
        self.kernel_size = kernel_size

    def context(self, scale: int) -> int:
        gaussian = math.ceil((self.kernel_size // 2 + 2 * scale) / scale)
        direct = math.ceil((DIV2KRK_SIZE * (3 if scale == 4 else 1)) / (2 * scale)) + 1
        return max(gaussian, direct)

    def _family(self, scale: int, gen: torch.Generator) -> str:
        weights = list(self.options.families)
        if scale not in (2, 4):
            weights[2] = 0.0
        return KERNEL_FAMILIES[_choice(gen, weights)]

    def _kernel(self, family: str, scale: int, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """One kernel of ``family`` (float32, for the blur) and its code (float64, (15,))."""
        opts = self.options
        if family == "isotropic":
            width = torch.tensor([uniform(gen, *opts.width_range)], dtype=torch.float64)
            kernel = isotropic_gaussian(self.kernel_size, width, dtype=torch.float64)[0]
            return kernel.float(), kernel_code(kernel)
        if family == "anisotropic":
            l1, l2, theta = sample_anisotropic_params(1, gen, lambda_range=opts.lambda_range)
            kernel = anisotropic_gaussian(self.kernel_size, l1, l2, theta,
                                          dtype=torch.float64)[0]
            return kernel.float(), kernel_code(kernel)
        kernel = div2krk_kernel(scale, gen, dtype=torch.float64)
        operator = _direct_code_operator(scale, (scale - 1) / 2, kernel.shape[-1])
        code = operator @ kernel.reshape(-1)
        told = code @ load_pca_basis().to(torch.float64)
        if not is_blur_kernel(told):
            # Not a blur kernel: udvd_kernel_from_direct's non-negative fit instead (x4).
            code = kernel_code(udvd_kernel_from_direct(kernel, scale))
        return kernel.float(), code

    def _sigma_range(self, gen: torch.Generator) -> tuple[float, float]:
        opts = self.options
        draw = uniform(gen, 0.0, 1.0)
        if draw < opts.noise_zero:
            return 0.0, 0.0
        if draw < opts.noise_zero + opts.noise_low:
            return 0.0, opts.low_noise
        return opts.noise_range

    def __call__(self, hr: torch.Tensor, scale: int, border: int,
                 gen: torch.Generator) -> dict[str, torch.Tensor]:
        opts = self.options
        patch = hr.shape[-1] - 2 * border * scale
        lr_size = patch // scale
        family = self._family(scale, gen)
        variant = uniform(gen, 0.0, 1.0) < opts.spatially_variant
        kernel_a, code_a = self._kernel(family, scale, gen)
        blurred = blur(hr[None], kernel_a)
        lr_pos = (torch.arange(lr_size, dtype=torch.float32) + 0.5) / lr_size
        code = code_a.float()[:, None, None].expand(-1, lr_size, lr_size)
        if variant:
            kernel_b, code_b = self._kernel(family, scale, gen)
            mix = RandomField.sample(gen, 0.0, 1.0)
            hr_pos = (torch.arange(hr.shape[-1], dtype=torch.float32) - border * scale + 0.5)
            t_hr = mix(hr_pos / patch, hr_pos / patch)
            blurred = blurred + t_hr * (blur(hr[None], kernel_b) - blurred)
            t_lr = mix(lr_pos, lr_pos)
            code = code + t_lr * (code_b.float() - code_a.float())[:, None, None]
        if family == "direct":
            clean = subsample(blurred, scale)
        else:
            clean = bicubic_downsample(blurred, scale)
        clean = trim(quantize(clean)[0], border)
        low, high = self._sigma_range(gen)
        if variant and high > low:
            sigma = RandomField.sample(gen, low, high)(lr_pos, lr_pos)[None]
        else:
            sigma = torch.full((1, lr_size, lr_size), uniform(gen, low, high))
        lr = add_noise(clean, sigma[None], generator=gen)
        if uniform(gen, 0.0, 1.0) < opts.as_file:
            lr = quantize(lr)
        return {"lr": lr, "dmap": torch.cat([code, sigma / 255.0]).contiguous()}
