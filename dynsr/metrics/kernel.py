"""How far an estimated blur kernel is from the true one (kernel estimation: KernelGAN, DualSR).

Both kernels are normalised to sum 1 and zero-padded around their middle tap to a common odd
size (an 11x11 DIV2KRK kernel against a 13x13 estimate), then compared tap by tap:

* ``kernel_sse``: the sum of squared differences (independent of the padding);
* ``kernel_psnr``: 10·log10(max(truth)² / mean squared difference) over the true kernel's
  own k x k support, a scale-free figure.

Kernels are compared as they are, without re-centring: DIV2KRK's kernels and KernelGAN's
post-processed estimates both have their centre of mass half a pixel (x2; 1.5 at x4) down-right
of the middle tap, the offset that puts the LR on MATLAB bicubic's grid, so a shift between
them is an error of the estimate.
"""

from __future__ import annotations

import math

import torch

from dynsr.degrade.kernels import pad_kernel

__all__ = ["kernel_error"]


def kernel_error(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """``{"kernel_sse", "kernel_psnr"}`` of a (k, k) estimate against the (k', k') truth."""
    for name, kernel in (("estimate", estimate), ("truth", truth)):
        if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
            raise ValueError(f"{name} kernel must be square with an odd side, got "
                             f"{tuple(kernel.shape)}")
    estimate = estimate.to(torch.float64) / estimate.sum()
    truth = truth.to(torch.float64) / truth.sum()
    size = max(estimate.shape[0], truth.shape[0])
    difference = pad_kernel(estimate, size) - pad_kernel(truth, size)
    sse = float((difference**2).sum())
    k, pad = truth.shape[0], (size - truth.shape[0]) // 2
    support = difference[pad:pad + k, pad:pad + k]
    mse = float((support**2).mean())
    peak = float(truth.max())
    kernel_psnr = math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)
    return {"kernel_sse": sse, "kernel_psnr": kernel_psnr}
