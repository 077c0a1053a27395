"""Tests for dynsr.ops.dynamic (dynamic_filter / dynamic_upsample) and dynsr.ops.dynamic_conv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynsr.ops import dynamic as dyn
from dynsr.ops import tap_bands
from dynsr.ops.dynamic import dynamic_filter, dynamic_upsample
from dynsr.ops.dynamic_conv import AttentionMixedConv2d, attention_mixed_conv2d

CL = torch.channels_last

# --------------------------------------------------------------------------------------------
# unfold-based references (materialise (B, C, k², H, W): fine at test sizes)


def ref_filter(x: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h, w)
    if kernels.shape[1] == k * k:
        return (cols * kernels.unsqueeze(1)).sum(2)
    return (cols * kernels.view(b, c, k * k, h, w)).sum(2)


def ref_upsample(x: torch.Tensor, kernels: torch.Tensor, k: int, r: int) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h, w)
    kern = kernels.view(b, k * k, r * r, h, w)
    subpixels = [(cols * kern[:, :, s].unsqueeze(1)).sum(2) for s in range(r * r)]
    # channel c·r² + s, as pixel_shuffle expects
    stacked = torch.stack(subpixels, dim=2).reshape(b, c * r * r, h, w)
    return F.pixel_shuffle(stacked, r)


def rand(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# --------------------------------------------------------------------------------------------
# forward against the reference


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("per_channel", [False, True])
def test_filter_matches_unfold_reference(k: int, c: int, per_channel: bool) -> None:
    x = rand(2, c, 9, 13)
    kernels = rand(2, (c if per_channel else 1) * k * k, 9, 13, seed=1)
    y = dynamic_filter(x, kernels)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, ref_filter(x, kernels, k))


@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("k", [3, 5])
def test_upsample_matches_reference(r: int, k: int) -> None:
    x = rand(2, 3, 6, 7)
    kernels = rand(2, k * k * r * r, 6, 7, seed=2)
    y = dynamic_upsample(x, kernels, r)
    assert y.shape == (2, 3, 6 * r, 7 * r)
    torch.testing.assert_close(y, ref_upsample(x, kernels, k, r))


def test_upsample_layout_is_pixel_shuffle_order() -> None:
    # Only sub-pixel s = a·r + q of tap centre set: output pixel (i·r + a, j·r + q) = x[i, j].
    r, k = 2, 3
    x = rand(1, 2, 4, 5)
    for a in range(r):
        for q in range(r):
            kernels = torch.zeros(1, k * k * r * r, 4, 5, dtype=x.dtype)
            kernels[:, 4 * r * r + a * r + q] = 1.0  # tap t = 4 is the centre
            y = dynamic_upsample(x, kernels, r)
            expected = torch.zeros_like(y)
            expected[:, :, a::r, q::r] = x
            torch.testing.assert_close(y, expected)


def test_upsample_scale_one_is_filter() -> None:
    x, kernels = rand(2, 3, 5, 6), rand(2, 25, 5, 6, seed=3)
    torch.testing.assert_close(dynamic_upsample(x, kernels, 1), dynamic_filter(x, kernels))


# --------------------------------------------------------------------------------------------
# hand-computed cases


def test_delta_kernels() -> None:
    k, p = 5, 2
    x = rand(1, 3, 6, 8)
    centre = torch.zeros(1, k * k, 6, 8, dtype=x.dtype)
    centre[:, (k * k) // 2] = 1.0
    torch.testing.assert_close(dynamic_filter(x, centre), x)

    # Tap (0, 0) reads x[i - p, j - p]: the image moves down-right by p, zeros come in.
    corner = torch.zeros_like(centre)
    corner[:, 0] = 1.0
    expected = torch.zeros_like(x)
    expected[:, :, p:, p:] = x[:, :, :-p, :-p]
    torch.testing.assert_close(dynamic_filter(x, corner), expected)


def test_ones_kernel_is_box_sum() -> None:
    x = torch.arange(20.0, dtype=torch.float64).view(1, 1, 4, 5)
    y = dynamic_filter(x, torch.ones(1, 9, 4, 5, dtype=torch.float64))
    # top-left pixel: x[0,0] + x[0,1] + x[1,0] + x[1,1] = 0 + 1 + 5 + 6
    assert y[0, 0, 0, 0].item() == 12.0
    # interior pixel (1, 1): 3×3 sum around value 6 = 9 · 6
    assert y[0, 0, 1, 1].item() == 54.0
    box = F.conv2d(x, torch.ones(1, 1, 3, 3, dtype=x.dtype), padding=1)
    torch.testing.assert_close(y, box)


def test_no_normalisation_of_kernels() -> None:
    x = torch.ones(1, 1, 3, 3)
    kernels = torch.full((1, 9, 3, 3), 2.0)
    assert dynamic_filter(x, kernels)[0, 0, 1, 1].item() == 18.0


# --------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("per_channel", [False, True])
def test_filter_gradcheck(per_channel: bool) -> None:
    c, k = 2, 3
    x = rand(2, c, 4, 5).requires_grad_()
    kernels = rand(2, (c if per_channel else 1) * k * k, 4, 5, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(dynamic_filter, (x, kernels))


def test_filter_gradcheck_channels_last_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dyn, "_CHANNELS_LAST_MIN_C", 2)
    x = rand(1, 3, 4, 5).contiguous(memory_format=CL).requires_grad_()
    kernels = rand(1, 9, 4, 5, seed=1).contiguous(memory_format=CL).requires_grad_()
    assert torch.autograd.gradcheck(dynamic_filter, (x, kernels))


@pytest.mark.parametrize("r", [2, 3])
def test_upsample_gradcheck(r: int) -> None:
    x = rand(1, 2, 3, 4).requires_grad_()
    kernels = rand(1, 9 * r * r, 3, 4, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: dynamic_upsample(a, b, r), (x, kernels))


def _grads(fn, x: torch.Tensor, kernels: torch.Tensor, seed: int = 5):
    x = x.detach().clone().requires_grad_()
    kernels = kernels.detach().clone().requires_grad_()
    y = fn(x, kernels)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=y.dtype)
    y.backward(g)
    return y, x.grad, kernels.grad


@pytest.mark.parametrize(
    ("c", "per_channel", "k"), [(3, False, 5), (3, True, 3), (1, False, 7), (12, False, 3)]
)
def test_filter_grads_match_reference_fp32(c: int, per_channel: bool, k: int) -> None:
    x = rand(2, c, 24, 19, dtype=torch.float32)
    kernels = rand(2, (c if per_channel else 1) * k * k, 24, 19, dtype=torch.float32, seed=1)
    ours = _grads(dynamic_filter, x, kernels)
    ref = _grads(lambda a, b: ref_filter(a, b, k), x, kernels)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_upsample_grads_match_reference_fp32() -> None:
    r, k = 2, 5
    x = rand(2, 3, 16, 13, dtype=torch.float32)
    kernels = rand(2, k * k * r * r, 16, 13, dtype=torch.float32, seed=1)
    ours = _grads(lambda a, b: dynamic_upsample(a, b, r), x, kernels)
    ref = _grads(lambda a, b: ref_upsample(a, b, k, r), x, kernels)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_only_needed_gradients() -> None:
    x = rand(1, 3, 5, 5).requires_grad_()
    kernels = rand(1, 9, 5, 5, seed=1)
    dynamic_filter(x, kernels).sum().backward()
    assert x.grad is not None and kernels.grad is None
    x2 = rand(1, 3, 5, 5)
    kernels2 = rand(1, 9, 5, 5, seed=1).requires_grad_()
    dynamic_filter(x2, kernels2).sum().backward()
    ref_kernels = kernels2.detach().clone().requires_grad_()
    ref_filter(x2, ref_kernels, 3).sum().backward()
    torch.testing.assert_close(kernels2.grad, ref_kernels.grad)


# --------------------------------------------------------------------------------------------
# memory formats, banded transposition, dtypes


@pytest.mark.parametrize("x_fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("k_fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize(("c", "per_channel"), [(3, False), (3, True), (20, False)])
def test_memory_formats(
    x_fmt: torch.memory_format,
    k_fmt: torch.memory_format,
    c: int,
    per_channel: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A tiny scratch budget forces several row bands for channels_last kernels.
    monkeypatch.setattr(tap_bands, "SCRATCH_BYTES", 4096)
    k = 3
    x = rand(2, c, 11, 7, dtype=torch.float32)
    kernels = rand(2, (c if per_channel else 1) * k * k, 11, 7, dtype=torch.float32, seed=1)
    ref = _grads(lambda a, b: ref_filter(a, b, k), x, kernels)
    ours = _grads(
        dynamic_filter, x.contiguous(memory_format=x_fmt), kernels.contiguous(memory_format=k_fmt)
    )
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    y, gx, gk = ours
    assert y.is_contiguous(memory_format=x_fmt) and gx.is_contiguous(memory_format=x_fmt)
    assert gk.is_contiguous(memory_format=k_fmt)


def test_upsample_channels_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap_bands, "SCRATCH_BYTES", 4096)
    r, k = 2, 3
    x = rand(1, 3, 9, 6, dtype=torch.float32)
    kernels = rand(1, k * k * r * r, 9, 6, dtype=torch.float32, seed=1)
    ref = _grads(lambda a, b: ref_upsample(a, b, k, r), x, kernels)
    ours = _grads(
        lambda a, b: dynamic_upsample(a, b, r),
        x.contiguous(memory_format=CL),
        kernels.contiguous(memory_format=CL),
    )
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert ours[0].is_contiguous(memory_format=CL)
    assert ours[2].is_contiguous(memory_format=CL)


def test_kernels_as_channel_slice() -> None:
    # A slice of a bigger prediction (non-dense, W-contiguous) is used without a copy.
    x = rand(1, 3, 8, 8)
    pred = rand(1, 30, 8, 8, seed=1)
    torch.testing.assert_close(dynamic_filter(x, pred[:, 2:27]), ref_filter(x, pred[:, 2:27], 5))


@pytest.mark.parametrize("fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("per_channel", [False, True])
def test_bfloat16_close_to_float32(per_channel: bool, fmt: torch.memory_format) -> None:
    c, k = 3, 5
    x = rand(2, c, 16, 12, dtype=torch.float32)
    kernels = rand(2, (c if per_channel else 1) * k * k, 16, 12, dtype=torch.float32, seed=1)
    xb = x.bfloat16().contiguous(memory_format=fmt)
    kb = kernels.bfloat16().contiguous(memory_format=fmt)
    y16, gx16, gk16 = _grads(dynamic_filter, xb, kb)
    assert y16.dtype == gx16.dtype == gk16.dtype == torch.bfloat16
    y32, gx32, gk32 = _grads(dynamic_filter, xb.float(), kb.float())
    for a, b in ((y16, y32), (gx16, gx32), (gk16, gk32)):
        # one bf16 rounding of an fp32-accumulated result
        assert (a.float() - b).abs().max() <= 1e-2 * b.abs().max()


def test_dtype_promotion_and_autocast() -> None:
    x = rand(1, 3, 8, 8, dtype=torch.float32)
    kernels = rand(1, 9, 8, 8, dtype=torch.float32, seed=1).bfloat16()
    assert dynamic_filter(x, kernels).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dynamic_filter(x, kernels).dtype == torch.float32
        assert dynamic_filter(x.bfloat16(), kernels).dtype == torch.bfloat16
        up = dynamic_upsample(x, rand(1, 36, 8, 8, seed=2).bfloat16(), 2)
        assert up.dtype == torch.float32 and up.shape == (1, 3, 16, 16)


def test_ambiguous_layout_needs_kernel_size() -> None:
    x = rand(1, 9, 4, 4)
    kernels = rand(1, 81, 4, 4, seed=1)  # shared 9×9 or per-channel 3×3
    with pytest.raises(ValueError, match="ambiguous"):
        dynamic_filter(x, kernels)
    torch.testing.assert_close(dynamic_filter(x, kernels, kernel_size=3), ref_filter(x, kernels, 3))
    torch.testing.assert_close(dynamic_filter(x, kernels, kernel_size=9), ref_filter(x, kernels, 9))


# --------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("x_shape", "k_shape", "match"),
    [
        ((1, 3, 5, 5), (1, 10, 5, 5), "expected k²"),  # neither k² nor C·k²
        ((1, 3, 5, 5), (1, 4, 5, 5), "odd"),  # 2×2 kernel
        ((1, 3, 5, 5), (1, 9, 5, 6), "spatial size"),
        ((2, 3, 5, 5), (1, 9, 5, 5), "batch"),
        ((3, 5, 5), (1, 9, 5, 5), r"\(B, C, H, W\)"),
    ],
)
def test_filter_errors(x_shape, k_shape, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dynamic_filter(torch.zeros(x_shape), torch.zeros(k_shape))


def test_filter_even_kernel_size_argument() -> None:
    with pytest.raises(ValueError, match="odd"):
        dynamic_filter(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 4), kernel_size=2)


@pytest.mark.parametrize(
    ("k_channels", "scale", "match"),
    [(20, 3, "multiple of scale"), (16, 2, "odd"), (9, 0, "positive integer")],
)
def test_upsample_errors(k_channels: int, scale: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dynamic_upsample(torch.zeros(1, 3, 4, 4), torch.zeros(1, k_channels, 4, 4), scale)


# --------------------------------------------------------------------------------------------
# attention-mixed convolution


def per_sample_reference(x, weight_bank, bias_bank, attention, **conv):
    outs = []
    for i in range(x.shape[0]):
        w = torch.einsum("k,koihw->oihw", attention[i], weight_bank)
        b = None if bias_bank is None else attention[i] @ bias_bank
        outs.append(F.conv2d(x[i : i + 1], w, b, **conv))
    return torch.cat(outs)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "conv",
    [
        {"stride": 1, "padding": 1},
        {"stride": 2, "padding": 0},
        {"stride": 1, "padding": "same", "dilation": 2},
        {"stride": (2, 1), "padding": (1, 0)},
    ],
)
@pytest.mark.parametrize("with_bias", [True, False])
def test_attention_mixed_conv_matches_per_sample_loop(batch, dtype, conv, with_bias) -> None:
    x = rand(batch, 4, 9, 8, dtype=dtype)
    bank = rand(3, 5, 4, 3, 3, dtype=dtype, seed=1)
    bias = rand(3, 5, dtype=dtype, seed=2) if with_bias else None
    attention = torch.softmax(rand(batch, 3, dtype=dtype, seed=3), dim=1)
    ref = per_sample_reference(x, bank, bias, attention, **conv)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(attention_mixed_conv2d(x, bank, bias, attention, **conv), ref, **tol)
    y_cl = attention_mixed_conv2d(x.contiguous(memory_format=CL), bank, bias, attention, **conv)
    torch.testing.assert_close(y_cl, ref, **tol)
    assert y_cl.is_contiguous(memory_format=CL)


def test_attention_mixed_conv_gradcheck() -> None:
    x = rand(2, 2, 4, 4).requires_grad_()
    bank = rand(3, 2, 2, 3, 3, seed=1).requires_grad_()
    bias = rand(3, 2, seed=2).requires_grad_()
    attention = torch.softmax(rand(2, 3, seed=3), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda *a: attention_mixed_conv2d(*a, padding=1), (x, bank, bias, attention)
    )


def test_attention_module() -> None:
    torch.manual_seed(0)
    m = AttentionMixedConv2d(8, 6, 3, num_kernels=4).double()
    x = rand(3, 8, 7, 5)
    a = m.attention(x)
    assert a.shape == (3, 4)
    torch.testing.assert_close(a.sum(1), torch.ones(3, dtype=a.dtype))
    y = m(x)
    assert y.shape == (3, 6, 7, 5)  # padding='same'
    torch.testing.assert_close(y, per_sample_reference(x, m.weight_bank, m.bias, a, padding=1))
    torch.testing.assert_close(m(x[:1]), y[:1])  # B = 1 fast path agrees

    # Temperature: large T -> near uniform, small T -> sharper.
    m.temperature = 1e6
    uniform = torch.full((3, 4), 0.25, dtype=a.dtype)
    torch.testing.assert_close(m.attention(x), uniform, rtol=0, atol=1e-4)
    m.temperature = 30.0
    spread_hot = m.attention(x).std(1)
    m.temperature = 0.01
    spread_cold = m.attention(x).std(1)
    assert (spread_cold > spread_hot).all()


def test_attention_module_init_and_options() -> None:
    torch.manual_seed(0)
    m = AttentionMixedConv2d(16, 8, (3, 5), num_kernels=4, reduction=4, bias=False)
    assert m.bias is None and m.fc1.out_channels == 4 and m.fc2.out_channels == 4
    bound = 1.0 / (16 * 3 * 5) ** 0.5  # kaiming_uniform(a=√5) bound = 1/√fan_in
    assert m.weight.abs().max() <= bound
    assert not torch.equal(m.weight_bank[0], m.weight_bank[1])  # banks initialised independently
    with pytest.raises(ValueError, match="same"):
        AttentionMixedConv2d(4, 4, 3, stride=2)


def test_attention_module_channels_last_and_autocast() -> None:
    torch.manual_seed(0)
    m = AttentionMixedConv2d(8, 8, 3)
    x = rand(2, 8, 10, 10, dtype=torch.float32)
    ref = m(x)
    y = m(x.contiguous(memory_format=CL))
    assert y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = m(x.contiguous(memory_format=CL))
    assert y16.dtype == torch.bfloat16
    assert (y16.float() - ref).abs().max() <= 5e-2 * ref.abs().max()
    y16.float().sum().backward()
    assert m.weight.grad is not None and m.fc1.weight.grad is not None


def test_attention_mixed_conv_errors() -> None:
    x = torch.zeros(2, 4, 5, 5)
    bank = torch.zeros(3, 5, 4, 3, 3)
    with pytest.raises(ValueError, match="attention"):
        attention_mixed_conv2d(x, bank, None, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="channels"):
        attention_mixed_conv2d(torch.zeros(2, 3, 5, 5), bank, None, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="bias_bank"):
        attention_mixed_conv2d(x, bank, torch.zeros(3, 4), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="batch"):
        attention_mixed_conv2d(x, bank, None, torch.zeros(1, 3))
