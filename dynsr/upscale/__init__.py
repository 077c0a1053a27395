"""The upscaling engine behind ``dynsr upscale`` and :func:`dynsr.load`.

- :mod:`dynsr.upscale.tiling`: tiled inference with blended seams and out-of-memory retry.
- :mod:`dynsr.upscale.weights`: the shipped-weights manifest and its sha256 check.
- :mod:`dynsr.api`: the :class:`~dynsr.api.Upscaler` object (alpha, grayscale, bit depth,
  devices and precision) built on both.
"""

from dynsr.upscale.tiling import (
    DEFAULT_TILE,
    RECEPTIVE_RADIUS,
    default_overlap,
    upscale_tiled,
    upscale_with_retry,
)
from dynsr.upscale.weights import WeightsError, find_weights, load_state_dict

__all__ = [
    "DEFAULT_TILE",
    "RECEPTIVE_RADIUS",
    "WeightsError",
    "default_overlap",
    "find_weights",
    "load_state_dict",
    "upscale_tiled",
    "upscale_with_retry",
]
