"""Pure tensor operators: MATLAB-exact resizing, colour, dynamic-kernel filtering."""

from dynsr.ops.color import quantize, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from dynsr.ops.dynamic import dynamic_filter, dynamic_upsample
from dynsr.ops.dynamic_conv import AttentionMixedConv2d, attention_mixed_conv2d
from dynsr.ops.resize import imresize

__all__ = ["imresize", "quantize", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]
__all__ += ["dynamic_filter", "dynamic_upsample", "AttentionMixedConv2d", "attention_mixed_conv2d"]
