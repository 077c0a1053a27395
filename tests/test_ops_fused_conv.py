import pytest
import torch
import torch.nn.functional as F

from dynsr.ops.fused_conv import canonical_channels_last, conv2d_fused, fused_conv_available


def _inputs(stride: int = 1):
    torch.manual_seed(0)
    x = torch.randn(1, 5, 13, 11).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, 3, 3)
    bias = torch.randn(7)
    other = torch.randn_like(F.conv2d(x, weight, bias, stride=stride, padding=1))
    return x, weight, bias, other


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_fused_conv_equals_the_separate_calls(stride, grad):
    x, weight, bias, other = _inputs(stride)
    conv = F.conv2d(x, weight, bias, stride=stride, padding=1)
    with torch.set_grad_enabled(grad):
        assert fused_conv_available(x) == (not grad and torch.backends.mkldnn.is_available())
        gelu = conv2d_fused(x, weight, bias, stride=stride, padding=1, activation="gelu")
        relu = conv2d_fused(x, weight, bias, stride=stride, padding=1, activation="relu")
        added = conv2d_fused(x, weight, bias, stride=stride, padding=1, add=other)
        plain = conv2d_fused(x, weight, None, stride=stride, padding=1)
    torch.testing.assert_close(gelu, F.gelu(conv), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(relu, F.relu(conv), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(added, conv + other, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, F.conv2d(x, weight, stride=stride, padding=1),
                               rtol=1e-5, atol=1e-5)


def test_autograd_gets_the_plain_path_with_gradients():
    x, weight, bias, _ = _inputs()
    weight.requires_grad_(True)
    conv2d_fused(x, weight, bias, padding=1, activation="gelu").sum().backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all()


def test_bad_arguments_are_refused():
    x, weight, bias, other = _inputs()
    with pytest.raises(ValueError, match="activation"):
        conv2d_fused(x, weight, bias, activation="tanh")
    with pytest.raises(ValueError, match="not both"):
        conv2d_fused(x, weight, bias, padding=1, activation="gelu", add=other)


def test_canonical_channels_last_fixes_the_batch_stride_of_an_image_view():
    image = torch.rand(5, 7, 3)  # (H, W, C) memory, as an image array
    x = image.permute(2, 0, 1)[None]
    assert x.is_contiguous(memory_format=torch.channels_last) and x.stride(0) == 3
    fixed = canonical_channels_last(x)
    assert fixed.stride() == (105, 1, 21, 3)
    assert fixed.data_ptr() == image.data_ptr() and torch.equal(fixed, x)  # no copy
    nchw = torch.rand(2, 3, 4, 5)
    assert canonical_channels_last(nchw).is_contiguous(memory_format=torch.channels_last)
