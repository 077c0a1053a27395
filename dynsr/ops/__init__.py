"""Pure tensor operators: MATLAB-exact resizing, colour, dynamic-kernel filtering."""

from dynsr.ops.color import quantize, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from dynsr.ops.resize import imresize

__all__ = ["imresize", "quantize", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]
