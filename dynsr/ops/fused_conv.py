"""Convolutions with their next element-wise step fused in, for fp32 inference on the CPU.

``conv2d_fused(x, w, b, activation="gelu")`` is ``F.gelu(F.conv2d(x, w, b))`` and
``conv2d_fused(x, w, b, add=other)`` is ``F.conv2d(x, w, b) + other``, computed by oneDNN in
one pass over the output (its post-ops) where that path exists: a CPU float32 tensor with
autograd off (oneDNN's fused ops have no backward) and a PyTorch built with oneDNN. The
activation or the addition then costs no extra read and write of the output, which for the
small convolutions of a 60 K-parameter network is a third of the time (DyConvSR, AVX2).
Anywhere else the same result comes from the separate calls. The two agree to float
rounding (the summation order of the convolution may differ).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["canonical_channels_last", "conv2d_fused", "fused_conv_available"]

_ACTIVATIONS = {None: "none", "gelu": "gelu", "relu": "relu"}


def _onednn_pointwise():
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_POINTWISE = _onednn_pointwise()


def fused_conv_available(x: torch.Tensor) -> bool:
    """Whether :func:`conv2d_fused` takes oneDNN's fused path for ``x`` here and now."""
    return (_POINTWISE is not None and torch.backends.mkldnn.is_available()
            and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling())


def conv2d_fused(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int = 1,
    padding: int = 0,
    activation: str | None = None,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """``activation(conv2d(x, weight, bias))`` or ``conv2d(x, weight, bias) + add``.

    Args:
        x: (B, Cin, H, W); channels_last keeps oneDNN from reordering it.
        weight: (Cout, Cin, kh, kw), groups = 1, dilation = 1.
        activation: None, "gelu" (exact, erf) or "relu"; not together with ``add``.
        add: a tensor of the output's shape, added to the convolution.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
    if activation is not None and add is not None:
        raise ValueError("conv2d_fused fuses an activation or an addition, not both")
    if fused_conv_available(x) and (add is None or add.dtype == torch.float32):
        pads, strides, ones = [padding, padding], [stride, stride], [1, 1]
        if add is None:
            return _POINTWISE(x, weight, bias, pads, strides, ones, 1,
                              _ACTIVATIONS[activation], [], "none")
        return _POINTWISE(x, add, weight, bias, pads, strides, ones, 1, "add", None, None, [],
                          None)  # the op's binary overload
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    if add is not None:
        return y + add
    if activation == "gelu":
        return F.gelu(y)
    return F.relu(y) if activation == "relu" else y


def canonical_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) channels_last, with the strides oneDNN takes as its own layout.

    A one-image batch made as ``t[None]`` from a (C, H, W) view of (H, W, C) memory (an
    image array) has a batch stride of C: PyTorch counts it as channels_last, oneDNN does
    not and reorders it at every convolution (7 ms of a 55 ms DyConvSR frame at 640×360,
    AVX2). A size-1 dimension's stride addresses nothing, so it is set without a copy.
    """
    x = x.contiguous(memory_format=torch.channels_last)
    if x.shape[0] == 1 and x.stride(0) != x[0].numel():
        x = x.as_strided(x.shape, (x[0].numel(), *x.stride()[1:]))
    return x
