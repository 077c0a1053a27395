"""Zero-shot (per image, no training data) blind SR.

* :mod:`dynsr.zeroshot.kernelgan`: KernelGAN kernel estimation (:func:`estimate_kernel`).
* :mod:`dynsr.zeroshot.dualsr`: DualSR super-resolution of a tensor (:func:`zeroshot`).
* :mod:`dynsr.zeroshot.api`: DualSR of any image kind (:func:`zeroshot_image`).
* :mod:`dynsr.zeroshot.blind`: a KernelGAN + noise estimate for non-blind UDVD.

The package itself is callable: ``dynsr.zeroshot(image, scale=2)`` is
:func:`zeroshot_image`.
"""

import sys
import types

from dynsr.zeroshot.api import DEFAULT_ITERATIONS, ZeroShotResult, zeroshot_image
from dynsr.zeroshot.dualsr import DualSRConfig, zeroshot
from dynsr.zeroshot.kernelgan import estimate_kernel, post_process_kernel

__all__ = ["DEFAULT_ITERATIONS", "DualSRConfig", "ZeroShotResult", "estimate_kernel",
           "post_process_kernel", "zeroshot", "zeroshot_image"]


class _CallablePackage(types.ModuleType):
    """Lets ``dynsr.zeroshot(image, scale=2, ...)`` call :func:`zeroshot_image`."""

    def __call__(self, image, scale: int = 2, **options) -> ZeroShotResult:
        return zeroshot_image(image, scale, **options)


sys.modules[__name__].__class__ = _CallablePackage
