"""Zero-shot (per image, no training data) blind SR.

* :mod:`dynsr.zeroshot.kernelgan`: KernelGAN kernel estimation (:func:`estimate_kernel`).
* :mod:`dynsr.zeroshot.dualsr`: DualSR super-resolution (:func:`zeroshot`).
"""

from dynsr.zeroshot.dualsr import DualSRConfig, zeroshot
from dynsr.zeroshot.kernelgan import estimate_kernel, post_process_kernel

__all__ = ["DualSRConfig", "estimate_kernel", "post_process_kernel", "zeroshot"]
