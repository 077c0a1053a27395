"""The degradation that makes a test LR image from an HR image, as a specification.

A :class:`Degradation` names everything needed to make the same LR image again (blur,
downsampling, noise, seed, or a random kernel / real-world-like degradation per image seeded
by the file name) and records itself in every results file (:meth:`Degradation.settings`).

Blur width and noise may each be a **horizontal ramp** ``(left, right)`` instead of a number:
UDVD's spatially variant test (its Table 3: width 0.2 → 2 and noise 5 → 50 from left to
right). The width rises linearly over the HR image's columns (the blur happens on the HR
grid); the noise rises linearly over the LR image's columns (it is added to the LR). A
non-blind model is told both per LR pixel: the width map block-averaged onto the LR grid
(:func:`dynsr.degrade.downsample_map`, the width at each LR pixel's centre) and the noise
map as it was drawn.
``dynsr eval``, ``dynsr degrade`` and training's validation build their LR images through it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from dynsr.degrade import (
    add_noise,
    degrade,
    div2krk_kernel,
    isotropic_gaussian,
    load_kernel,
    realistic,
)
from dynsr.degrade.degradation_map import (
    downsample_map,
    horizontal_ramp,
    udvd_kernel_from_direct,
)
from dynsr.ops import quantize

__all__ = ["RANDOM_KERNELS", "Degradation", "Ramp", "modcrop"]

RANDOM_KERNELS = ("div2krk",)

#: A value rising linearly from the first number (left column) to the second (right column).
Ramp = tuple[float, float]


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop (..., H, W) at the top-left to a multiple of ``scale`` (benchmark convention)."""
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


def _name_seed(seed: int, name: str) -> int:
    # Per-image seed from the file name: the same image gets the same draw whatever else is
    # in the folder and in whatever order it is processed.
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


@dataclass(frozen=True)
class Degradation:
    """A fully specified degradation; ``settings()`` is what results files record."""

    scale: int
    blur: float | Ramp | None = None
    kernel_file: Path | None = None
    kernel_size: int = 15
    noise: float | Ramp = 0.0
    downsample: str = "bicubic"
    seed: int = 0
    random_kernel: str | None = None
    realistic: bool = False

    def __post_init__(self) -> None:
        if self.varies_in_space and self.downsample != "bicubic":
            raise ValueError("--blur / --noise ramps (LEFT:RIGHT) are made with bicubic "
                             "downsampling: leave out --downsample direct")

    @property
    def per_image(self) -> bool:
        """Whether the blur differs from image to image (a random kernel per image)."""
        return self.random_kernel is not None

    @property
    def varies_in_space(self) -> bool:
        """Whether the blur width or the noise is a horizontal ramp across the image."""
        return isinstance(self.blur, tuple) or isinstance(self.noise, tuple)

    def kernel(self, name: str | None = None) -> torch.Tensor | None:
        """The blur kernel (float32, (k, k)) of image ``name`` (file name), or None."""
        if self.random_kernel is not None:
            if name is None:
                raise ValueError("a random kernel per image needs the image's file name")
            # Its own stream: the same image gets the same kernel whatever the noise.
            return div2krk_kernel(self.scale, _name_seed(self.seed, f"kernel:{name}"))
        if self.kernel_file is not None:
            return load_kernel(self.kernel_file)
        if isinstance(self.blur, tuple):
            return None  # a kernel per pixel: see width_map
        if self.blur is not None:
            return isotropic_gaussian(self.kernel_size, self.blur)
        return None

    def width_map(self, height: int, width: int) -> torch.Tensor | None:
        """The blur width (1, 1, H, W) over an HR image of that size, if the blur is a ramp."""
        if not isinstance(self.blur, tuple):
            return None
        return horizontal_ramp(height, width, *self.blur, dtype=torch.float64)

    def noise_map(self, height: int, width: int) -> float | torch.Tensor:
        """The noise sigma over an LR image of that size: a number, or (1, 1, h, w)."""
        if not isinstance(self.noise, tuple):
            return self.noise
        return horizontal_ramp(height, width, *self.noise, dtype=torch.float64)

    def model_conditions(self, name: str | None = None,
                         lr_size: tuple[int, int] | None = None) -> dict:
        """What a non-blind model is told about this degradation (``blur=``, ``noise=``) for
        image ``name`` (needed when the kernel differs per image) whose LR is ``lr_size``
        (needed for ramps)."""
        if self.varies_in_space:
            if lr_size is None:
                raise ValueError("a degradation that varies across the image needs the LR size")
            h, w = lr_size
            s = self.scale
            blur = self.blur
            if isinstance(blur, tuple):
                blur = downsample_map(self.width_map(h * s, w * s), s).float()
            noise = self.noise_map(h, w)
            return {"blur": blur, "noise": noise.float() if isinstance(noise, torch.Tensor)
                    else noise}
        use_kernel = self.kernel_file is not None or self.random_kernel is not None
        blur = self.kernel(name) if use_kernel else self.blur
        if self.downsample == "direct" and blur is not None:
            # UDVD learnt "blur, then bicubic": tell it the kernel that, followed by bicubic's
            # antialiasing, makes this blur (dynsr.degrade.degradation_map).
            kernel = blur if use_kernel else isotropic_gaussian(self.kernel_size, blur)
            blur = udvd_kernel_from_direct(kernel, self.scale).float()
        return {"blur": blur, "noise": self.noise}

    def conditions_of_file(self, path: Path, lr: torch.Tensor | None = None) -> dict:
        """:meth:`model_conditions` of the image file ``path`` (``lr``, (C, h, w) or
        (B, C, h, w), is needed for ramps only)."""
        return self.model_conditions(path.name, None if lr is None else tuple(lr.shape[-2:]))

    def image_seed(self, name: str) -> int:
        """The seed of image ``name``'s random draws (noise, realistic parameters)."""
        return _name_seed(self.seed, name)

    def apply(self, hr: torch.Tensor, name: str, *, as_file: bool = False) -> torch.Tensor:
        """LR image (C, h, w) from HR (C, H, W), the way papers test: the clean LR rounded to
        8 bit, then AWGN that is neither clipped nor rounded (SRMD, UDVD, KAIR's test code:
        the network sees the float noisy image). ``as_file``: clamped and rounded to 8 bit
        as well, as an LR image file holds it (``dynsr degrade``); at noise 50 that costs a
        model trained on unclipped noise about 1.4 dB (UDVD-lite x2, Set5, width 1.3)."""
        if self.realistic:
            gen = torch.Generator().manual_seed(self.image_seed(name))
            params = realistic.sample_params(realistic.RealisticOptions(), gen)
            colour = hr.expand(3, -1, -1) if hr.shape[0] == 1 else hr
            lr = realistic.apply(colour.to(torch.float32), self.scale, params, gen)
            lr = torch.round(lr.to(hr.dtype) * 255) / 255  # exact samples, as files give
            return quantize(lr.mean(dim=0, keepdim=True)) if hr.shape[0] == 1 else lr
        if self.varies_in_space:
            height, width = hr.shape[-2:]
            widths = self.width_map(height, width)
            clean = degrade(hr, self.scale, kernel=self.kernel(name),
                            width=None if widths is None else widths.to(hr.dtype),
                            kernel_size=self.kernel_size)
            noise = self.noise_map(*clean.shape[-2:])
            if isinstance(noise, torch.Tensor):
                noise = noise.to(hr.dtype)
            lr = add_noise(clean, noise, self.image_seed(name))
            return quantize(lr.clamp(0, 1)) if as_file else lr
        return degrade(hr, self.scale, kernel=self.kernel(name), noise=self.noise,
                       downsample=self.downsample, requantize=as_file,
                       seed=self.image_seed(name))

    def settings(self) -> dict:
        """What a results file records about this degradation."""
        if self.realistic:
            return {"scale": self.scale, "hr_crop": "top-left crop to a multiple of the scale",
                    "degradation": self._blur_setting(),
                    "steps": "Gaussian blur 7-21 px (width 0.2-3) -> bicubic/bilinear/area "
                             "down -> sub-pixel shift up to 0.5 LR px -> Gaussian (1-30) or "
                             "Poisson noise, 8-bit -> JPEG 30-95",
                    "seed": self.seed}
        return {
            "scale": self.scale,
            "hr_crop": "top-left crop to a multiple of the scale",
            "blur": self._blur_setting(),
            "downsample": ("MATLAB bicubic imresize(1/scale), antialiased"
                           if self.downsample == "bicubic" else "direct subsampling"),
            "quantize": "8-bit after downsampling",
            "noise_sigma_255": list(self.noise) if isinstance(self.noise, tuple) else self.noise,
            "noise": ("AWGN after quantisation, not clipped or rounded (SRMD/UDVD test "
                      "protocol)" + (", sigma rising linearly over the LR columns, left to "
                                     "right" if isinstance(self.noise, tuple) else ""))
            if self.noise else "none",
            "seed": self.seed,
        }

    def _blur_setting(self) -> str:
        if self.realistic:
            return ("random real-world-like degradation per image (dynsr.degrade.realistic, "
                    "default ranges, seeded by the seed and the file name)")
        if self.random_kernel == "div2krk":
            return ("random DIV2KRK-style kernel per image (dynsr.degrade.div2krk_kernel, "
                    "seeded by the seed and the file name; centre of mass (s-1)/2 px "
                    "down-right of the middle tap, so the LR lies on MATLAB bicubic's grid), "
                    "replicate padding")
        if isinstance(self.blur, tuple):
            return (f"isotropic Gaussian, width rising linearly over the HR columns from "
                    f"{self.blur[0]} (left) to {self.blur[1]} (right), {self.kernel_size}x"
                    f"{self.kernel_size} per pixel, replicate padding")
        if self.blur is not None:
            return (f"isotropic Gaussian, width {self.blur}, {self.kernel_size}x"
                    f"{self.kernel_size}, replicate padding")
        return f"kernel file {self.kernel_file}" if self.kernel_file else "none"
