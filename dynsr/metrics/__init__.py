"""Quality metrics measured as the SR literature does (Y channel, crop = scale, float64)."""

from dynsr.metrics.kernel import kernel_error
from dynsr.metrics.quality import (
    MetricSettings,
    evaluate_pair,
    gaussian_window,
    psnr,
    ssim,
    to_y,
)

__all__ = ["MetricSettings", "evaluate_pair", "gaussian_window", "kernel_error", "psnr", "ssim",
           "to_y"]
