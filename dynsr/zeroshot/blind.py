"""Blind UDVD: estimate the degradation of one LR image, then tell the non-blind UDVD.

UDVD (Xu et al., CVPR 2020) is non-blind; its paper notes that any degradation estimator can
be put in front of it. dynsr uses:

* **Kernel**: KernelGAN (:func:`dynsr.zeroshot.kernelgan.estimate_kernel`), trained on the
  image itself. Its kernel ``k`` describes "blur with k, then keep every s-th pixel".
* **Noise**: :func:`dynsr.degrade.noise_level.estimate_noise_level` (patch PCA), on the
  0..255 scale, as UDVD's noise input.

Mapping the kernel onto UDVD's conditioning. UDVD was trained on "blur with k_u, then MATLAB
bicubic downscaling", whose antialiasing filter b blurs once more, so ``k ≈ k_u * b``. As a
correlation kernel for "keep pixels 0, s, 2s, ...", b has taps ``cubic((d - o) / s) / s``
(normalised) where o is the offset of bicubic's LR sample from the kept HR pixel; MATLAB's
grid puts LR pixel i at HR position ``s·i + (s-1)/2``, so o = (s-1)/2: 0.5 at x2, 1.5 at x4.
KernelGAN's estimates and DIV2KRK's kernels carry exactly that offset in their centre of
mass (:data:`dynsr.zeroshot.kernelgan.GRID_OFFSET`, the analytic x4 composition gives 1.5),
so dynsr reads o off the kernel itself (its centre of mass minus the middle tap, per axis;
a middle-centred kernel, e.g. SRMD/KAIR-style data, gives o = 0) and UDVD's k_u stays
centred. UDVD only sees k_u through its 15 PCA coefficients, so dynsr solves the small
least-squares problem ``min_c ‖(Σ_i c_i B_i) * b − k‖²`` over the 15 coefficients c (B_i:
the PCA basis kernels, 15 x 15; all kernels zero-padded around their middle tap to one
common odd size) and gives UDVD ``k_u = Σ_i c_i B_i``, whose code is c. KernelGAN's kernel
(13 x 13 from G_DN, a few taps larger after its post-processing shift; at x4 the analytic
composition, 3k − 2) is used as it is, only zero-padded, never cropped. Measured on
isotropic Gaussians k_u of widths 0.5-2.6 blurred by b: the recovered code is within 4-17 %
(relative L2) of the true one (the PCA basis is loose), where using k itself as UDVD's
kernel is 22-69 % off for widths up to 1.0 (it counts b twice) and closer only for widths
of 2 and more, where b hardly matters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dynsr.degrade.degradation_map import bicubic_filter, udvd_kernel_from_direct
from dynsr.degrade.noise_level import estimate_noise_level
from dynsr.zeroshot.kernelgan import estimate_kernel

__all__ = ["BlindEstimate", "bicubic_filter", "estimate_degradation", "udvd_kernel_from_direct"]


@dataclass(frozen=True)
class BlindEstimate:
    """What blind UDVD tells the model, and where it came from."""

    kernel: torch.Tensor  # KernelGAN's estimate (blur, then every s-th pixel), float64
    udvd_kernel: torch.Tensor  # (15, 15) k_u in UDVD's convention (blur, then bicubic)
    noise: float  # 0..255 scale

    def conditions(self) -> dict:
        """UDVD's keyword arguments (``blur=``, ``noise=``)."""
        return {"blur": self.udvd_kernel.float(), "noise": self.noise}


def estimate_degradation(lr: torch.Tensor, scale: int, *, iterations: int = 3000,
                         seed: int = 0) -> BlindEstimate:
    """KernelGAN kernel and noise level of ``lr`` (C, h, w) in [0, 1], mapped for UDVD."""
    kernel = estimate_kernel(lr, scale, iterations, seed)
    return BlindEstimate(kernel=kernel, udvd_kernel=udvd_kernel_from_direct(kernel, scale),
                         noise=estimate_noise_level(lr))
