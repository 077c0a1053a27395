"""Attention-mixed dynamic convolution (Chen et al. 2020, "Dynamic Convolution: Attention over
Convolution Kernels"), the building block of DyConvSR.

A layer holds K kernel banks ``W_k`` (Cout, Cin, kh, kw) and biases ``b_k``. Each sample gets
attention weights ``π(x) = softmax(z / T)`` with ``z = fc2(ReLU(fc1(GAP(x))))`` (1×1 convs
Cin → Cin/reduction → K) and is convolved with its own mixed kernel ``W̃ = Σ_k π_k W_k`` and
bias ``b̃ = Σ_k π_k b_k``.

All samples run as ONE grouped convolution: the batch is folded into the channel axis (input
(1, B·Cin, H, W), weight (B·Cout, Cin, kh, kw), ``groups=B``). With B == 1 it is a plain conv.
For channels_last input the fold is done in channels_last order (a (H, W, B·Cin) copy), which
keeps the grouped conv in the fast layout; contiguous input folds as a free view. Measured on
2 cores (B=16, C=64, 48×48, 3×3): folded channels_last 5.9 ms, contiguous 5.6 ms, going
channels_last → contiguous → channels_last 7.3 ms, a per-sample loop 5.9-7.6 ms.

Mixed precision: no casting of our own. Under autocast the bank mixing (matmul) and the conv
run in the autocast dtype and the softmax in float32, as autocast's op lists decide.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttentionMixedConv2d", "attention_mixed_conv2d", "mix_kernel_banks"]

_Pair = int | tuple[int, int]


def _check_banks(
    x: torch.Tensor,
    weight_bank: torch.Tensor,
    bias_bank: torch.Tensor | None,
    attention: torch.Tensor,
) -> None:
    if weight_bank.dim() != 5:
        raise ValueError(
            f"weight_bank must be (K, Cout, Cin, kh, kw), got shape {tuple(weight_bank.shape)}"
        )
    k_banks, c_out, c_in = weight_bank.shape[:3]
    if attention.dim() != 2 or attention.shape[1] != k_banks:
        raise ValueError(f"attention must be (B, K={k_banks}), got shape {tuple(attention.shape)}")
    if bias_bank is not None and tuple(bias_bank.shape) != (k_banks, c_out):
        raise ValueError(
            f"bias_bank must be (K, Cout) = ({k_banks}, {c_out}), got {tuple(bias_bank.shape)}"
        )
    if x.dim() != 4:
        raise ValueError(f"x must be (B, Cin, H, W), got shape {tuple(x.shape)}")
    if x.shape[0] != attention.shape[0]:
        raise ValueError(
            f"batch mismatch: x has {x.shape[0]} samples, attention {attention.shape[0]}"
        )
    if x.shape[1] != c_in:
        raise ValueError(f"x has {x.shape[1]} channels, weight_bank expects Cin={c_in}")


def mix_kernel_banks(
    weight_bank: torch.Tensor, bias_bank: torch.Tensor | None, attention: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample kernels ``Σ_k π_k W_k`` (B, Cout, Cin, kh, kw) and biases (B, Cout) or None."""
    k_banks = weight_bank.shape[0]
    weight = (attention @ weight_bank.reshape(k_banks, -1)).view(-1, *weight_bank.shape[1:])
    bias = None if bias_bank is None else attention @ bias_bank
    return weight, bias


def attention_mixed_conv2d(
    x: torch.Tensor,
    weight_bank: torch.Tensor,
    bias_bank: torch.Tensor | None,
    attention: torch.Tensor,
    stride: _Pair = 1,
    padding: _Pair | str = 0,
    dilation: _Pair = 1,
) -> torch.Tensor:
    """Convolve each sample with its attention-mixed kernel, as one grouped convolution.

    Args:
        x: (B, Cin, H, W), contiguous or channels_last (the output follows).
        weight_bank: (K, Cout, Cin, kh, kw) kernel banks.
        bias_bank: (K, Cout) or None.
        attention: (B, K) mixing weights (usually softmax rows; not renormalised here).
        stride, padding, dilation: as for ``F.conv2d`` (``padding`` may be 'same'/'valid').

    Returns:
        (B, Cout, H', W').
    """
    _check_banks(x, weight_bank, bias_bank, attention)
    b, c_in, h, w = x.shape
    c_out = weight_bank.shape[1]
    weight, bias = mix_kernel_banks(weight_bank, bias_bank, attention)
    if b == 1:  # one sample: a plain convolution
        return F.conv2d(x, weight[0], None if bias is None else bias[0], stride, padding, dilation)

    weight = weight.reshape(b * c_out, c_in, *weight.shape[-2:])
    bias = None if bias is None else bias.reshape(b * c_out)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    if channels_last:
        # (B, H, W, Cin) memory -> (H, W, B·Cin): the folded input in channels_last order.
        folded = x.permute(2, 3, 0, 1).reshape(1, h, w, b * c_in).permute(0, 3, 1, 2)
        weight = weight.contiguous(memory_format=torch.channels_last)
    else:
        folded = x.reshape(1, b * c_in, h, w)  # a view for contiguous x
    y = F.conv2d(folded, weight, bias, stride, padding, dilation, groups=b)
    ho, wo = y.shape[-2:]
    if channels_last:
        y = y.permute(0, 2, 3, 1).reshape(ho, wo, b, c_out).permute(2, 3, 0, 1)
        return y.contiguous(memory_format=torch.channels_last)
    return y.reshape(b, c_out, ho, wo)


class AttentionMixedConv2d(nn.Module):
    """Dynamic convolution over ``num_kernels`` attention-mixed kernel banks (Chen et al.).

    Attention ``π(x) = softmax(fc2(ReLU(fc1(GAP(x)))) / temperature)`` with 1×1 convs
    ``in_channels → max(1, in_channels // reduction) → num_kernels``. ``temperature`` is a
    plain attribute: a training loop may anneal it (DyConvSR goes 30 → 1); the module uses
    whatever is set. ``attention(x)`` returns the (B, num_kernels) weights for inspection.

    Each kernel bank is initialised independently like an ``nn.Conv2d`` weight (Kaiming
    uniform, a=√5), biases uniform in ±1/√fan_in, as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        num_kernels: int = 4,
        temperature: float = 30.0,
        stride: _Pair = 1,
        padding: _Pair | str = "same",
        dilation: _Pair = 1,
        bias: bool = True,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        strides = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if padding == "same" and max(strides) > 1:
            raise ValueError("padding='same' needs stride 1; give an explicit padding")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kh, kw)
        self.num_kernels = num_kernels
        self.temperature = float(temperature)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        # Stored 4-D, (K·Cout, Cin, kh, kw), so Module.to(memory_format=channels_last) works
        # on models built from this layer; `weight_bank` gives the (K, Cout, ...) view.
        self.weight = nn.Parameter(torch.empty(num_kernels * out_channels, in_channels, kh, kw))
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels)) if bias else None
        hidden = max(1, in_channels // reduction)
        self.fc1 = nn.Conv2d(in_channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, num_kernels, 1)
        self.reset_parameters()

    @property
    def weight_bank(self) -> torch.Tensor:
        """The kernel banks as (K, Cout, Cin, kh, kw)."""
        return self.weight.reshape(self.num_kernels, self.out_channels, *self.weight.shape[1:])

    def reset_parameters(self) -> None:
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        banks = self.weight.data.view(self.num_kernels, self.out_channels, *self.weight.shape[1:])
        for k in range(self.num_kernels):
            # Independently per bank, exactly as nn.Conv2d initialises its weight.
            nn.init.kaiming_uniform_(banks[k], a=math.sqrt(5))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias[k], -bound, bound)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_kernels) attention weights, rows summing to 1."""
        return self.attention_from_mean(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def attention_from_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The attention from the input's (B, in_channels) spatial mean (GAP), which a caller
        may have summed over tiles of a large input."""
        z = self.fc2(F.relu(self.fc1(mean[:, :, None, None])))
        return torch.softmax(z.flatten(1) / self.temperature, dim=1)

    def forward(self, x: torch.Tensor, attention: torch.Tensor | None = None) -> torch.Tensor:
        """``attention`` (B, num_kernels): given instead of computed from ``x`` (a tile of a
        larger image then mixes its kernels as the whole image does)."""
        return attention_mixed_conv2d(
            x,
            self.weight_bank,
            self.bias,
            self.attention(x) if attention is None else attention,
            self.stride,
            self.padding,
            self.dilation,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"num_kernels={self.num_kernels}, temperature={self.temperature}, "
            f"stride={self.stride}, padding={self.padding!r}, bias={self.bias is not None}"
        )
