"""Zero-shot (per image, no training data) blind SR: KernelGAN kernel estimation, DualSR."""

from dynsr.zeroshot.kernelgan import estimate_kernel, post_process_kernel

__all__ = ["estimate_kernel", "post_process_kernel"]
