"""Estimating the Gaussian noise level of an image (blind UDVD needs it as an input).

:func:`estimate_noise_level` is the patch-based PCA estimator of Chen, Zhu and Heng ("An
Efficient Statistical Method for Image Noise Level Estimation", ICCV 2015): the eigenvalues
of the covariance of the image's r x r x C patches that belong to noise alone are those of a
set whose mean equals its median; the noise variance is their mean. The steps:

1. take r x r patches of all channels (r = 7 here; the paper uses 7 or 8) at a stride that
   keeps at most ``max_patches`` of them (the estimate is a statistic of the patches; the
   stride only thins them);
2. eigenvalues of their covariance (float64), ascending;
3. for m = d, d − 1, ..., 1: if the m smallest eigenvalues have as many values above their
   mean as below it, stop; sigma = sqrt(that mean).

Pixel values are read on the 0..255 scale, so sigma is on the scale UDVD's and SRMD's noise
levels use. Measured on 256 x 256 crops of scikit-image's colour photos (astronaut, coffee,
chelsea) with unclipped AWGN: sigma 5 is read as 5.1-5.3, sigma 15-50 within 1 %; on the
textured grayscale camera 6.1 for 5 (texture looks like noise). Clean photos read 0.5-2.
Clipping to [0, 1] hides part of strong noise (sigma 50 on astronaut, clipped: 42).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["GREY_NOISE_GAIN", "estimate_noise_level"]

# A grey image goes through the RGB networks (UDVD, the degradation estimator) as three equal
# channels, so its noise is the same in all three; they learnt noise drawn independently per
# channel, which three channels average down by √3. Told sigma, UDVD leaves a grey image's
# noise in (grey Set5 x2, width 1.3, sigma 15: 23.30 dB told 15, 27.72 told 26 = 15·√3), and
# the estimator reads it ~1.67× too high. Both are scaled by this gain.
GREY_NOISE_GAIN = math.sqrt(3.0)


def estimate_noise_level(image: torch.Tensor, patch: int = 7,
                         max_patches: int = 200_000) -> float:
    """Noise standard deviation (0..255 scale) of a (C, H, W) image with values in [0, 1]."""
    if image.dim() != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
    channels, height, width = image.shape
    if min(height, width) < 2 * patch:
        raise ValueError(f"image {height}x{width} is too small to estimate its noise level "
                         f"(needs {2 * patch} pixels per side)")
    positions = (height - patch + 1) * (width - patch + 1)
    stride = max(1, math.ceil(math.sqrt(positions / max_patches)))
    x = image.to(torch.float64)[None] * 255.0
    patches = F.unfold(x, patch, stride=stride)[0]  # (C·r·r, N), N <= max_patches
    patches = patches - patches.mean(dim=1, keepdim=True)
    covariance = patches @ patches.T / patches.shape[1]
    eigenvalues = torch.linalg.eigvalsh(covariance).clamp_min(0.0)  # ascending
    for count in range(eigenvalues.numel(), 0, -1):
        head = eigenvalues[:count]
        mean = head.mean()
        if int((head > mean).sum()) == int((head < mean).sum()):
            return float(mean.sqrt())
    return float(eigenvalues[0].sqrt())
