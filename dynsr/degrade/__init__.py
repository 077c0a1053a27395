"""Synthetic degradations: blur kernels, HR -> LR pipelines, SRMD/UDVD degradation maps.

* :mod:`dynsr.degrade.kernels`: Gaussian kernels (SRMD convention), DIV2KRK-style random
  kernels, the analytic x4 kernel, a validating kernel-file loader.
* :mod:`dynsr.degrade.pipeline`: blur (uniform, per image, per pixel), bicubic or direct
  downsampling, 8-bit quantisation, AWGN; :func:`degrade` chains them (UDVD Eq. 1 by default).
* :mod:`dynsr.degrade.degradation_map`: the shipped 15-dim PCA basis of 15x15 kernels,
  kernel codes, and the (B, 16, H, W) degradation map, constant or per pixel.
* :mod:`dynsr.degrade.noise_level`: the noise level of an image (Chen et al.'s patch-PCA
  estimator), so that a non-blind model (UDVD) can run blind.
* :mod:`dynsr.degrade.realistic`: a seeded "real-world-like" degradation (mixed blur and
  downsampling, sub-pixel LR/HR misalignment, noise, JPEG) for DDet's training and tests.
"""

from dynsr.degrade.degradation_map import (
    bicubic_filter,
    compute_pca_basis,
    degradation_map,
    direct_kernel_from_udvd,
    downsample_map,
    horizontal_ramp,
    kernel_code,
    kernel_from_code,
    load_pca_basis,
    save_pca_basis,
    udvd_kernel_from_direct,
)
from dynsr.degrade.kernels import (
    analytic_x4_kernel,
    anisotropic_gaussian,
    center_of_mass,
    div2krk_kernel,
    isotropic_gaussian,
    isotropic_gaussian_field,
    load_kernel,
    make_generator,
    pad_kernel,
    random_anisotropic_kernel,
    recentre_kernel,
    sample_anisotropic_params,
    save_kernel,
)
from dynsr.degrade.pipeline import (
    add_noise,
    bicubic_downsample,
    blur,
    degrade,
    gaussian_blur,
    separable_blur,
    subsample,
)

__all__ = [
    "add_noise",
    "bicubic_filter",
    "udvd_kernel_from_direct",
    "direct_kernel_from_udvd",
    "analytic_x4_kernel",
    "anisotropic_gaussian",
    "bicubic_downsample",
    "blur",
    "center_of_mass",
    "compute_pca_basis",
    "degradation_map",
    "degrade",
    "div2krk_kernel",
    "downsample_map",
    "gaussian_blur",
    "separable_blur",
    "horizontal_ramp",
    "isotropic_gaussian",
    "isotropic_gaussian_field",
    "kernel_code",
    "kernel_from_code",
    "load_kernel",
    "pad_kernel",
    "save_kernel",
    "load_pca_basis",
    "make_generator",
    "random_anisotropic_kernel",
    "recentre_kernel",
    "sample_anisotropic_params",
    "save_pca_basis",
    "subsample",
]
