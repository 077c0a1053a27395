"""PSNR and SSIM on the Y channel, exactly as the SR literature measures them.

The protocol (CONVENTIONS.md), applied by :func:`evaluate_pair`:

1. round the SR output to 8 bit (``floor(255 x + 0.5)``), as saving a PNG does;
2. take BT.601 studio-range luma on the 0..255 scale
   (``Y = 16 + 65.481 R + 128.553 G + 24.966 B``, not rounded); a grayscale image *is* its
   luma (255 · value, as the MATLAB scripts skip ``rgb2ycbcr`` for 1-channel images);
3. crop ``crop`` pixels from every border (``crop = scale`` by convention);
4. PSNR = 10 log10(255² / MSE) in float64 (``inf`` when identical);
   SSIM with an 11×11 Gaussian window (sigma 1.5), C1 = (0.01·255)², C2 = (0.03·255)²,
   over the valid region only (no padding, no downsampling), in float64.

Data-set scores are the means of per-image scores.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from dynsr.ops.color import quantize, rgb_to_y

__all__ = [
    "MetricSettings",
    "evaluate_pair",
    "gaussian_window",
    "psnr",
    "ssim",
    "to_y",
]


@dataclass(frozen=True)
class MetricSettings:
    """Everything that changes a PSNR/SSIM figure; recorded in every results file."""

    channel: str = "Y (BT.601 studio range, MATLAB rgb2ycbcr; grayscale used as is)"
    round_to_uint8: bool = True
    crop_border: int = 0
    psnr_peak: float = 255.0
    ssim_window: str = "gaussian 11x11, sigma 1.5"
    ssim_constants: str = "C1=(0.01*255)^2, C2=(0.03*255)^2"
    ssim_region: str = "valid (no padding), no downsampling"
    precision: str = "float64"
    dataset_score: str = "mean of per-image scores"

    def as_dict(self) -> dict:
        return asdict(self)


def to_y(image: torch.Tensor, round_to_uint8: bool = True) -> torch.Tensor:
    """Luma on the 0..255 scale, float64, shape (..., H, W), from (..., C, H, W) in [0, 1].

    C = 3: BT.601 studio-range Y; C = 1: the gray level itself (times 255).
    """
    if image.dim() < 3 or image.shape[-3] not in (1, 3):
        raise ValueError(f"expected an image (..., 1 or 3, H, W), got {tuple(image.shape)}")
    x = image.detach().to(torch.float64)
    if round_to_uint8:
        x = quantize(x)
    if x.shape[-3] == 1:
        return x[..., 0, :, :] * 255.0
    return rgb_to_y(x)[..., 0, :, :]


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    if border <= 0:
        return x
    if x.shape[-2] <= 2 * border or x.shape[-1] <= 2 * border:
        raise ValueError(f"image {tuple(x.shape[-2:])} too small to crop {border} px borders")
    return x[..., border:-border, border:-border]


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """PSNR in dB between two arrays of the same shape, in float64; ``inf`` if identical."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    mse = torch.mean((a.to(torch.float64) - b.to(torch.float64)) ** 2).item()
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64), as MATLAB's fspecial('gaussian') separated."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    # Separable 'valid' correlation: (N, 1, H, W) -> (N, 1, H-k+1, W-k+1).
    k = taps.numel()
    x = F.conv2d(x, taps.view(1, 1, k, 1))
    return F.conv2d(x, taps.view(1, 1, 1, k))


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    peak: float = 255.0,
    window: int = 11,
    sigma: float = 1.5,
) -> float:
    """Mean SSIM of two single-channel images (H, W), valid region, in float64.

    Wang et al. 2004 with a Gaussian window; equals scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=peak)``.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"SSIM needs two (H, W) images of one shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape) < window:
        raise ValueError(f"image {tuple(a.shape)} smaller than the {window}x{window} SSIM window")
    taps = gaussian_window(window, sigma).to(a.device)
    x = a.to(torch.float64).view(1, 1, *a.shape)
    y = b.to(torch.float64).view(1, 1, *b.shape)
    stats = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), taps)
    mu_x, mu_y, xx, yy, xy = stats
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).mean().item()


def evaluate_pair(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> dict[str, float]:
    """PSNR-Y and SSIM-Y of one SR image against its HR image, both (C, H, W) in [0, 1].

    The HR image is taken as stored (it is already 8-bit); the SR output is rounded to 8 bit.
    """
    if sr.shape != hr.shape:
        raise ValueError(f"SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ in shape")
    y_sr = _crop(to_y(sr), crop_border)
    y_hr = _crop(to_y(hr), crop_border)
    return {"psnr_y": psnr(y_sr, y_hr), "ssim_y": ssim(y_sr, y_hr)}
