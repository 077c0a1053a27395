"""DyConvSR: shapes, size, gradients, the per-colour skip, the attention temperature,
the high-frequency branch, channels_last / bf16, and the model card."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

import dynsr.models.dyconvsr as dyconvsr_module
from dynsr.models import create, get_spec
from dynsr.models.complexity import count_parameters
from dynsr.models.dyconvsr import DyConvSR

PAPER_PARAMS_X2 = 60_000  # Table 1 of the paper: "#Params (K) 60"
# head 3 488 + dynamic 37 292 + tail 13 872 + hf_conv 5 232 + spatial attention 98
EXPECTED_PARAMS = {2: 59_982, 3: 83_862, 4: 117_294}


def _model(scale: int = 2, seed: int = 0, **config) -> DyConvSR:
    torch.manual_seed(seed)
    return create("dyconvsr", scale=scale, **config)


def _nearest(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="nearest")


def test_registered_with_its_scales():
    spec = get_spec("dyconvsr")
    assert spec.scales == (2, 3, 4)
    assert not spec.needs_degradation
    with pytest.raises(ValueError, match="supports scales"):
        create("dyconvsr", scale=8)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(8, 10), (9, 7), (1, 2)], ids=["even", "odd", "tiny"])
@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape(scale, size, batch):
    h, w = size
    with torch.no_grad():
        out = _model(scale)(torch.rand(batch, 3, h, w))
    assert out.shape == (batch, 3, scale * h, scale * w)
    assert torch.isfinite(out).all()


def test_odd_sizes_are_replicate_padded_then_cropped():
    model = _model(3)
    x = torch.rand(2, 3, 9, 7)
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :27, :21])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_parameter_count(scale):
    n = count_parameters(_model(scale))
    assert n == EXPECTED_PARAMS[scale]
    if scale == 2:
        assert abs(n - PAPER_PARAMS_X2) / PAPER_PARAMS_X2 < 0.05


def test_gradients_reach_every_parameter():
    model = _model(2)
    x = torch.rand(2, 3, 12, 10)
    target = torch.rand(2, 3, 24, 20)
    F.l1_loss(model(x), target).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_skip_repeats_each_colour_into_its_own_subpixels(scale):
    model = _model(scale)
    # Zero both convs feeding the first pixel-shuffle: the body's output is then exactly 0.
    with torch.no_grad():
        for conv in (model.tail, model.hf_conv):
            conv.weight.zero_()
            conv.bias.zero_()
        # Colours far apart so a red sub-pixel copying green or blue (the release) shows.
        x = torch.rand(2, 3, 6, 5) * 0.1 + torch.tensor([0.0, 0.4, 0.8]).view(1, 3, 1, 1)
        out = model(x)
    torch.testing.assert_close(out, _nearest(x, scale), rtol=0, atol=0)


def test_attention_rows_sum_to_one_and_follow_the_temperature():
    model = _model(2)
    x = torch.rand(3, 3, 10, 10)
    with torch.no_grad():
        at_30 = model.kernel_attention(x)
        model.set_temperature(1.0)
        at_1 = model.kernel_attention(x)
    assert at_30.shape == (3, 4)
    torch.testing.assert_close(at_30.sum(dim=1), torch.ones(3))
    torch.testing.assert_close(at_1.sum(dim=1), torch.ones(3))
    # A high temperature flattens the softmax towards uniform weights.
    assert (at_30 - 0.25).abs().max() < (at_1 - 0.25).abs().max()
    assert not torch.allclose(at_30, at_1)


def test_anneal_schedule_lowers_the_temperature_linearly():
    model = _model(2, temperature_schedule="anneal", anneal_fraction=0.1)
    x = torch.rand(2, 3, 8, 8)
    model.set_progress(0.0)
    assert model.temperature == 30.0
    with torch.no_grad():
        start = model.kernel_attention(x)
    model.set_progress(0.05)
    assert model.temperature == pytest.approx(15.5)
    model.set_progress(0.1)
    assert model.temperature == pytest.approx(1.0)
    model.set_progress(0.7)
    assert model.temperature == pytest.approx(1.0)
    with torch.no_grad():
        end = model.kernel_attention(x)
    assert not torch.allclose(start, end)
    with pytest.raises(ValueError, match="progress"):
        model.set_progress(-0.1)


def test_fixed_schedule_keeps_the_release_temperature():
    model = _model(2)
    model.set_progress(0.5)
    assert model.temperature == 30.0
    assert model.dynamic.temperature == 30.0


def test_temperature_travels_with_the_state_dict():
    trained = _model(2, temperature_schedule="anneal")
    trained.set_progress(1.0)
    fresh = _model(2, seed=1, temperature_schedule="anneal")
    assert fresh.temperature == 30.0
    fresh.load_state_dict(trained.state_dict())
    assert fresh.temperature == 1.0
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x))


def test_high_frequency_is_input_minus_mirrored_gaussian_blur():
    model = _model(2)
    assert "gaussian_kernel" not in dict(model.named_parameters())
    assert "gaussian_kernel" not in model.state_dict()
    x = torch.rand(1, 3, 9, 12)
    # scipy "mirror" = torch "reflect"; truncate 2 σ gives the 5×5 support at σ = 1.
    blurred = np.stack([
        gaussian_filter(c, sigma=1.0, mode="mirror", truncate=2.0) for c in x[0].double().numpy()
    ])
    expected = x - torch.from_numpy(blurred).float()[None]
    torch.testing.assert_close(model.high_frequency(x), expected, rtol=0, atol=1e-6)
    flat = torch.full((1, 3, 2, 2), 0.3)  # too small to reflect: replicate, still exact
    torch.testing.assert_close(model.high_frequency(flat), torch.zeros_like(flat))


def test_channels_last_and_bf16_autocast_match_fp32():
    model = _model(3).eval()
    x = torch.rand(2, 3, 11, 10)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        out_cl = model(x_cl)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(x_cl)
    torch.testing.assert_close(out_cl, ref, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out_bf16).all()
    # Compare the learned part (output minus skip) so the exact skip cannot hide errors.
    body_ref = ref - _nearest(x, 3)
    body_bf16 = out_bf16.float() - _nearest(x, 3)
    assert body_ref.abs().max() > 0.05  # the body really contributes
    assert (body_bf16 - body_ref).abs().max() < 0.03


def test_bad_inputs_and_configs_are_refused():
    with pytest.raises(ValueError, match="temperature_schedule"):
        create("dyconvsr", scale=2, temperature_schedule="cosine")
    with pytest.raises(ValueError, match="anneal_fraction"):
        create("dyconvsr", scale=2, anneal_fraction=0.0)
    with pytest.raises(ValueError, match="RGB"):
        _model(2)(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="positive"):
        _model(2).set_temperature(0.0)


def test_model_card_keeps_its_deviations_section():
    doc = dyconvsr_module.__doc__
    assert "\nDeviations\n----------\n" in doc
    for must_mention in ("Per-colour skip", "x3 and x4", "35.98/.9497", "59 982", "Training"):
        assert must_mention in doc


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(12, 16), (9, 7), (2, 2)], ids=["even", "odd", "tiny"])
def test_fused_cpu_inference_equals_the_plain_forward(scale, size):
    # Without autograd, fp32 on the CPU, one image takes the fused path (6x6 stride-2 head,
    # oneDNN post-ops, reordered sub-pixels, one-hot skip); with autograd the plain one.
    model = _model(scale, seed=3)
    with torch.no_grad():  # trained-looking weights: the random biases are too small to test
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        fused = model(x)
    plain = model(x).detach()
    torch.testing.assert_close(fused, plain, rtol=0, atol=2e-6)
    with torch.no_grad():
        takes_fused_path = dyconvsr_module.fused_conv_available(x)
    if size[0] % 2 == 0 and size[1] % 2 == 0 and takes_fused_path:
        # Written pixel-interleaved: the fused path, not the plain one, made it.
        assert fused.is_contiguous(memory_format=torch.channels_last)
        assert not fused.is_contiguous()
    attention = torch.softmax(torch.randn(1, 4), dim=1)
    with torch.no_grad():
        fused = model(x, attention=attention)
    torch.testing.assert_close(fused, model(x, attention=attention).detach(), rtol=0,
                               atol=2e-6)


def test_subpixel_order_and_skip_weight_describe_the_two_pixel_shuffles():
    for scale in (2, 3, 4):
        features = torch.arange(12 * scale**2, dtype=torch.float32).view(1, -1, 1, 1)
        shuffled = F.pixel_shuffle(F.pixel_shuffle(features, 2), scale)  # (1, 3, 2s, 2s)
        reordered = features[:, dyconvsr_module._subpixel_order(scale)]
        blocks = reordered.view(2, scale, 2, scale, 3)  # (a, p, b, q, colour)
        torch.testing.assert_close(blocks.permute(4, 0, 1, 2, 3).reshape(3, 2 * scale,
                                                                         2 * scale),
                                   shuffled[0])
        x = torch.rand(1, 3, 2, 2)
        skip = F.conv2d(x, dyconvsr_module._nearest_skip_weight(scale), stride=2)
        skip = skip.view(2, scale, 2, scale, 3).permute(4, 0, 1, 2, 3).reshape(3, 2 * scale,
                                                                                2 * scale)
        assert torch.equal(skip, _nearest(x, scale)[0])
