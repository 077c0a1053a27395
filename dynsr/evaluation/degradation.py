"""The degradation that makes a test LR image from an HR image, as a specification.

A :class:`Degradation` names everything needed to make the same LR image again (blur,
downsampling, noise, seed, or a random kernel / real-world-like degradation per image seeded
by the file name) and records itself in every results file (:meth:`Degradation.settings`).
``dynsr eval``, ``dynsr degrade`` and training's validation build their LR images through it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from dynsr.degrade import degrade, div2krk_kernel, isotropic_gaussian, load_kernel, realistic
from dynsr.degrade.degradation_map import udvd_kernel_from_direct
from dynsr.ops import quantize

__all__ = ["RANDOM_KERNELS", "Degradation", "modcrop"]

RANDOM_KERNELS = ("div2krk",)


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
    blur: float | None = None
    kernel_file: Path | None = None
    kernel_size: int = 15
    noise: float = 0.0
    downsample: str = "bicubic"
    seed: int = 0
    random_kernel: str | None = None
    realistic: bool = False

    @property
    def per_image(self) -> bool:
        """Whether the blur differs from image to image (a random kernel per image)."""
        return self.random_kernel is not None

    def kernel(self, name: str | None = None) -> torch.Tensor | None:
        """The blur kernel (float32, (k, k)) of image ``name`` (file name), or None."""
        if self.random_kernel is not None:
            if name is None:
                raise ValueError("a random kernel per image needs the image's file name")
            # Its own stream: the same image gets the same kernel whatever the noise.
            return div2krk_kernel(self.scale, _name_seed(self.seed, f"kernel:{name}"))
        if self.kernel_file is not None:
            return load_kernel(self.kernel_file)
        if self.blur is not None:
            return isotropic_gaussian(self.kernel_size, self.blur)
        return None

    def model_conditions(self, name: str | None = None) -> dict:
        """What a non-blind model is told about this degradation (``blur=``, ``noise=``) for
        image ``name`` (needed when the kernel differs per image)."""
        use_kernel = self.kernel_file is not None or self.random_kernel is not None
        blur = self.kernel(name) if use_kernel else self.blur
        if self.downsample == "direct" and blur is not None:
            # UDVD learnt "blur, then bicubic": tell it the kernel that, followed by bicubic's
            # antialiasing, makes this blur (dynsr.degrade.degradation_map).
            kernel = blur if use_kernel else isotropic_gaussian(self.kernel_size, blur)
            blur = udvd_kernel_from_direct(kernel, self.scale).float()
        return {"blur": blur, "noise": self.noise}

    def conditions_of_file(self, path: Path, lr: torch.Tensor | None = None) -> dict:
        """:meth:`model_conditions` of the image file ``path`` (``lr`` is not needed)."""
        return self.model_conditions(path.name)

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
            "noise_sigma_255": self.noise,
            "noise": "AWGN after quantisation, not clipped or rounded (SRMD/UDVD test "
                     "protocol)" if self.noise else "none",
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
        if self.blur is not None:
            return (f"isotropic Gaussian, width {self.blur}, {self.kernel_size}x"
                    f"{self.kernel_size}, replicate padding")
        return f"kernel file {self.kernel_file}" if self.kernel_file else "none"
