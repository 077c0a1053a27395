"""Tests for dynsr.models.udvd: shapes, parameter counts, degradation inputs, dynamic kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynsr.degrade import isotropic_gaussian
from dynsr.models import create, get_spec
from dynsr.models import udvd as udvd_module
from dynsr.models.udvd import (
    UDVD,
    DynamicBlock,
    build_degradation_map,
    multistage_loss,
    multistage_targets,
)
from dynsr.ops.resize import imresize

CL = torch.channels_last
TINY = {"channels": 8, "num_residual_blocks": 1}


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g)


def tiny(scale: int, seed: int = 0, **config) -> UDVD:
    torch.manual_seed(seed)
    return UDVD(scale, **{**TINY, **config}).eval()


def nearest(x: torch.Tensor, r: int) -> torch.Tensor:
    return x.repeat_interleave(r, dim=-2).repeat_interleave(r, dim=-1)


# --------------------------------------------------------------------------------------------
# registry, configurations, shapes


def test_registered_names_and_configs():
    full, lite = get_spec("udvd"), get_spec("udvd-lite")
    for spec in (full, lite):
        assert spec.needs_degradation
        assert spec.scales == (2, 3, 4)
    assert full.defaults == {"channels": 128, "num_residual_blocks": 15}
    assert lite.defaults == {"channels": 64, "num_residual_blocks": 8}


@pytest.mark.parametrize("scale, blocks", [(2, "UDD"), (3, "UDD"), (4, "UUDD")])
def test_default_block_strings(scale, blocks):
    model = create("udvd-lite", scale=scale)
    assert model.blocks == blocks
    assert [block.rate for block in model.refinement] == (
        [scale, 1, 1] if scale < 4 else [2, 2, 1, 1]
    )


# (blocks, scale, size factor of every block's output)
CONFIGS = [
    ("U", 2, [2]), ("DU", 2, [1, 2]), ("UD", 2, [2, 2]), ("UDD", 2, [2, 2, 2]),
    ("U", 3, [3]), ("DU", 3, [1, 3]), ("UD", 3, [3, 3]), ("UDD", 3, [3, 3, 3]),
    ("U", 4, [4]), ("DU", 4, [1, 4]), ("UD", 4, [4, 4]), ("UDD", 4, [4, 4, 4]),
    ("UUDD", 4, [2, 4, 4, 4]), ("UU", 4, [2, 4]), ("DUDU", 4, [1, 2, 2, 4]),
]


@pytest.mark.parametrize("blocks, scale, factors", CONFIGS)
@pytest.mark.parametrize("batch", [1, 2])
def test_tiny_shapes_every_configuration(blocks, scale, factors, batch):
    model = tiny(scale, blocks=blocks)
    lr = rand(batch, 3, 5, 7)
    with torch.no_grad():
        outputs = model(lr, blur=1.3, noise=15.0, return_all=True)
        final = model(lr, blur=1.3, noise=15.0)
    assert [tuple(o.shape) for o in outputs] == [(batch, 3, 5 * f, 7 * f) for f in factors]
    assert model.output_sizes(5, 7) == [(5 * f, 7 * f) for f in factors]
    assert torch.equal(final, outputs[-1])
    assert all(torch.isfinite(o).all() for o in outputs)


@pytest.mark.parametrize("name", ["udvd", "udvd-lite"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_registered_models_shapes(name, scale):
    torch.manual_seed(0)
    model = create(name, scale=scale).eval()
    lr = rand(2, 3, 5, 3)
    with torch.no_grad():
        outputs = model(lr, blur=torch.tensor([0.5, 2.0]), noise=torch.tensor([0.0, 30.0]),
                        return_all=True)
    expected = {2: [2, 2, 2], 3: [3, 3, 3], 4: [2, 4, 4, 4]}[scale]
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 5 * f, 3 * f) for f in expected]
    assert torch.isfinite(outputs[-1]).all()


@pytest.mark.parametrize("blocks, scale", [("UUD", 3), ("DD", 2), ("UXD", 2), ("", 2),
                                           ("UUU", 4)])
def test_bad_block_strings_are_refused(blocks, scale):
    with pytest.raises(ValueError, match="blocks"):
        UDVD(scale, blocks=blocks, **TINY)


def test_bad_model_options_are_refused():
    with pytest.raises(ValueError, match="kernel_size"):
        UDVD(2, kernel_size=4, **TINY)
    with pytest.raises(ValueError, match="kernel_normalization"):
        UDVD(2, kernel_normalization="sigmoid", **TINY)
    with pytest.raises(ValueError, match="scale"):
        create("udvd-lite", scale=8)


# --------------------------------------------------------------------------------------------
# parameter counts


def _conv(cin: int, cout: int) -> int:
    return 9 * cin * cout + cout


def expected_parameters(channels: int, depth: int, blocks: str, rate: int, k: int = 5) -> int:
    """Hand count from the architecture description (module doc), independent of the code."""
    trunk = _conv(19, channels) + 2 * depth * _conv(channels, channels) + _conv(channels, channels)
    stages = max(blocks[:m].count("U") for m in range(len(blocks)))
    upsamplers = stages * _conv(channels, channels * rate * rate)
    total = trunk + upsamplers
    for letter in blocks:
        r = rate if letter == "U" else 1
        image_path = _conv(3, 16) + _conv(16, 16) + _conv(16, 32)
        kernel_head = _conv(32 + channels, k * k * r * r)
        residual_head = _conv(32 + channels, 16 * r * r) + _conv(16, 3)
        total += image_path + kernel_head + residual_head
    return total


@pytest.mark.parametrize(
    "name, scale, figure",
    [("udvd", 2, 5_565_471), ("udvd", 3, 6_598_796), ("udvd", 4, 6_399_974),
     ("udvd-lite", 2, 1_022_815), ("udvd-lite", 3, 1_384_780), ("udvd-lite", 4, 1_320_230)],
)
def test_parameter_counts(name, scale, figure):
    model = create(name, scale=scale)
    count = sum(p.numel() for p in model.parameters())
    channels, depth = (128, 15) if name == "udvd" else (64, 8)
    rate = 2 if scale == 4 else scale
    assert count == figure
    assert count == expected_parameters(channels, depth, model.blocks, rate)


# --------------------------------------------------------------------------------------------
# training: gradients and the multistage loss


@pytest.mark.parametrize("blocks, scale", [("UUDD", 4), ("DUD", 3)])
def test_gradients_reach_every_parameter(blocks, scale):
    model = tiny(scale, blocks=blocks).train()
    lr, hr = rand(2, 3, 6, 5), rand(2, 3, 6 * scale, 5 * scale, seed=1)
    outputs = model(lr, blur=torch.tensor([0.3, 2.5]), noise=torch.tensor([5.0, 60.0]),
                    return_all=True)
    multistage_loss(hr, outputs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_multistage_targets_and_loss():
    model = tiny(4)  # UUDD: outputs at 2x, 4x, 4x, 4x
    lr, hr = rand(1, 3, 5, 6), rand(1, 3, 20, 24, seed=1)
    with torch.no_grad():
        outputs = model(lr, return_all=True)
    pairs = multistage_targets(hr, outputs)
    assert len(pairs) == 4
    assert torch.allclose(pairs[0][1], imresize(hr, size=(10, 12)))
    assert all(target is hr for _, target in pairs[1:])
    assert all(out is o for (out, _), o in zip(pairs, outputs, strict=True))

    skipped = multistage_targets(hr, outputs, smaller="skip")
    assert [out for out, _ in skipped] == outputs[1:]
    loss = multistage_loss(hr, outputs)
    manual = F.mse_loss(outputs[0], imresize(hr, size=(10, 12))) + sum(
        F.mse_loss(o, hr) for o in outputs[1:]
    )
    assert torch.allclose(loss, manual)
    with pytest.raises(ValueError, match="larger"):
        multistage_targets(hr[..., :8, :8], outputs)
    with pytest.raises(ValueError, match="smaller"):
        multistage_targets(hr, outputs, smaller="nearest")


# --------------------------------------------------------------------------------------------
# the degradation inputs


def test_degradation_changes_the_output():
    model = tiny(2)
    lr = rand(1, 3, 8, 8)
    with torch.no_grad():
        sharp, blurry = model(lr, blur=0.5), model(lr, blur=2.5)
        clean, noisy = model(lr, noise=0.0), model(lr, noise=50.0)
        unblurred = model(lr)
        zero_width = model(lr, blur=0.0)
    assert (sharp - blurry).abs().max() > 1e-4
    assert (clean - noisy).abs().max() > 1e-4
    assert torch.equal(unblurred, zero_width)  # None means the delta kernel


def test_blur_forms_agree():
    model = tiny(3)
    lr = rand(2, 3, 6, 7)
    with torch.no_grad():
        by_width = model(lr, blur=1.3, noise=10.0)
        by_kernel = model(lr, blur=isotropic_gaussian(15, 1.3), noise=10.0)
        by_batch_kernels = model(lr, blur=isotropic_gaussian(15, torch.tensor([1.3, 1.3])),
                                 noise=torch.tensor([10.0, 10.0]))
        small_kernel = model(lr, blur=isotropic_gaussian(15, 0.6)[4:11, 4:11] /
                             isotropic_gaussian(15, 0.6)[4:11, 4:11].sum())
        by_width_small = model(lr, blur=0.6)
    assert torch.allclose(by_width, by_kernel, atol=1e-6)
    assert torch.allclose(by_width, by_batch_kernels, atol=1e-6)
    # a 7x7 kernel is zero-padded to 15x15: width 0.6 has no mass outside 7x7 (to 1e-10)
    assert torch.allclose(small_kernel, by_width_small, atol=1e-5)


def test_batched_degradations_are_per_sample():
    model = tiny(2)
    lr = rand(2, 3, 6, 6)
    with torch.no_grad():
        both = model(lr, blur=torch.tensor([0.4, 2.2]), noise=torch.tensor([0.0, 40.0]))
        first = model(lr[:1], blur=0.4, noise=0.0)
        second = model(lr[1:], blur=2.2, noise=40.0)
    assert torch.allclose(both[:1], first, atol=1e-6)
    assert torch.allclose(both[1:], second, atol=1e-6)


def test_constant_per_pixel_maps_equal_the_scalar_case():
    model = tiny(2)
    lr = rand(2, 3, 5, 9)
    with torch.no_grad():
        scalar = model(lr, blur=1.3, noise=15.0)
        noise_map = model(lr, blur=1.3, noise=torch.full((2, 1, 5, 9), 15.0))
        width_map = model(lr, blur=torch.full((1, 1, 5, 9), 1.3), noise=15.0)
        kernels = isotropic_gaussian(15, 1.3).reshape(1, 225, 1, 1).expand(2, 225, 5, 9)
        kernel_map = model(lr, blur=kernels, noise=15.0)
    assert torch.equal(scalar, noise_map)
    assert torch.allclose(scalar, width_map, atol=1e-6)
    assert torch.allclose(scalar, kernel_map, atol=1e-6)


def test_spatially_variant_map_acts_locally():
    # One U block: the output at an LR column depends on the map within a few pixels only, so
    # a map that is 0 on the left half and 50 on the right gives the noise-0 output far left
    # and the noise-50 output far right.
    model = tiny(2, blocks="U")
    lr = rand(1, 3, 6, 24)
    noise = torch.zeros(1, 1, 6, 24)
    noise[..., 12:] = 50.0
    with torch.no_grad():
        mixed = model(lr, noise=noise)
        clean, noisy = model(lr, noise=0.0), model(lr, noise=50.0)
    assert torch.allclose(mixed[..., :8], clean[..., :8], atol=1e-6)
    assert torch.allclose(mixed[..., -8:], noisy[..., -8:], atol=1e-6)
    assert not torch.allclose(mixed, clean, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blur": torch.ones(17, 17) / 289}, "k odd and ≤ 15"),
        ({"blur": torch.ones(4, 4) / 16}, "k odd"),
        ({"blur": torch.ones(5, 7)}, "square"),
        ({"blur": torch.ones(3, 5, 5)}, "batch size 3"),
        ({"blur": -0.5}, "non-negative"),
        ({"blur": float("nan")}, "non-negative"),
        ({"blur": torch.tensor([1.0, 2.0, 3.0])}, "batch size 3"),
        ({"blur": torch.full((2, 1, 12, 16), 1.0)}, "downsample_map"),
        ({"blur": torch.full((2, 1, 5, 8), 1.0)}, "does not match the LR image"),
        ({"blur": torch.ones(2, 4, 6, 8)}, "width map"),
        ({"blur": "gaussian"}, "blur must be"),
        ({"noise": -1.0}, "non-negative"),
        ({"noise": torch.full((2, 1, 3, 4), 5.0)}, "does not match the LR image"),
        ({"noise": torch.full((2, 2, 6, 8), 5.0)}, r"\(B, 1, h, w\)"),
        ({"noise": torch.ones(2, 3)}, "noise must be"),
        ({"noise": torch.tensor([5.0, -1.0])}, "non-negative"),
    ],
)
def test_bad_degradation_inputs_are_refused(kwargs, message):
    model = tiny(2)
    with pytest.raises(ValueError, match=message):
        model(rand(2, 3, 6, 8), **kwargs)


def test_bad_images_and_maps_are_refused():
    model = tiny(2)
    with pytest.raises(ValueError, match=r"\(B, 3, h, w\)"):
        model(rand(2, 1, 6, 8))
    with pytest.raises(ValueError, match="degradation map"):
        model.forward_with_map(rand(2, 3, 6, 8), rand(2, 15, 6, 8))
    with pytest.raises(ValueError, match="degradation map"):
        model.forward_with_map(rand(2, 3, 6, 8), rand(2, 16, 6, 9))


def test_map_is_built_in_full_precision_under_autocast():
    lr = rand(1, 3, 4, 5)
    plain = build_degradation_map(lr, blur=1.7, noise=20.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = build_degradation_map(lr, blur=1.7, noise=20.0)
    assert under_autocast.dtype == torch.float32
    assert torch.equal(plain, under_autocast)
    assert plain.shape == (1, 16, 4, 5)
    assert torch.allclose(plain[:, 15], torch.full((1, 4, 5), 20.0 / 255))


# --------------------------------------------------------------------------------------------
# the dynamic kernels


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(H, W) mask of pixels where any channel of any batch item differs."""
    return (a != b).any(dim=1).any(dim=0)


def _window(shape: tuple[int, int], rows: range, cols: range) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[max(rows.start, 0):rows.stop, max(cols.start, 0):cols.stop] = True
    return mask


@pytest.mark.parametrize("rate", [1, 2, 3])
def test_filtering_with_fixed_kernels_is_local(rate):
    # The block's filtering step with given per-pixel kernels: a change of the input at one
    # pixel moves exactly the outputs whose k x k window (per sub-pixel) covers it.
    torch.manual_seed(0)
    block = DynamicBlock(8, rate=rate, kernel_size=5)
    h, w, i, j, p = 9, 10, 4, 2, 2
    image = rand(1, 3, h, w).double()
    kernels = torch.randn(1, 25 * rate * rate, h, w, dtype=torch.float64)
    base = block.apply_kernels(image, kernels)
    poked = image.clone()
    poked[0, 1, i, j] += 1.0
    moved = block.apply_kernels(poked, kernels)
    assert base.shape == (1, 3, rate * h, rate * w)
    expected = _window((rate * h, rate * w), range((i - p) * rate, (i + p + 1) * rate),
                       range((j - p) * rate, (j + p + 1) * rate))
    assert torch.equal(_changed(base, moved), expected)
    # only the poked colour moves: the kernels are shared, the channels are not mixed
    assert torch.equal((base != moved).any(dim=(2, 3))[0], torch.tensor([False, True, False]))


@pytest.mark.parametrize("rate", [1, 2])
def test_whole_block_is_local_given_the_features(rate):
    # Kernels and residual read the image through 3 + 1 convs (radius 4 at the input grid),
    # the kernels then reach 2 further: nothing beyond 6 input pixels may change.
    torch.manual_seed(0)
    block = DynamicBlock(8, rate=rate).double()
    h, w, i, j = 16, 17, 8, 9
    image, features = rand(1, 3, h, w).double(), rand(1, 8, h, w, seed=1).double()
    poked = image.clone()
    poked[0, 0, i, j] += 0.5
    with torch.no_grad():
        changed = _changed(block(image, features), block(poked, features))
    allowed = _window((rate * h, rate * w), range((i - 6) * rate, (i + 7) * rate),
                      range((j - 6) * rate, (j + 7) * rate))
    assert changed.any()
    assert not (changed & ~allowed).any()


def test_model_predicts_different_kernels_at_different_pixels():
    model = tiny(2)
    lr = rand(1, 3, 8, 8)
    with torch.no_grad():
        dmap = build_degradation_map(lr, blur=1.0, noise=10.0)
        features = model.features(torch.cat([lr, dmap], dim=1))
        block = model.refinement[0]
        kernels = block.predict_kernels(block.joint_features(lr, features))
        other = block.predict_kernels(
            block.joint_features(lr, model.features(torch.cat(
                [lr, build_degradation_map(lr, blur=2.5, noise=40.0)], dim=1)))
        )
    assert kernels.shape == (1, 25 * 4, 8, 8) and kernels.is_contiguous()
    per_pixel = kernels[0].flatten(1)  # (k²r², pixels)
    spread = (per_pixel - per_pixel.mean(dim=1, keepdim=True)).abs().amax(dim=1)
    assert (spread > 1e-3).all()  # every kernel tap varies over the image
    assert (kernels - other).abs().max() > 1e-3  # and with the degradation


@pytest.mark.parametrize("rate", [1, 2, 3])
def test_kernel_head_starts_at_identity_or_nearest(rate):
    # The bias initialisation puts the centre tap first in every sub-pixel's k² taps: with the
    # weights zeroed the dynamic step is the identity (D) or nearest-neighbour upsampling (U).
    block = DynamicBlock(8, rate=rate)
    with torch.no_grad():
        block.kernel_head.weight.zero_()
        image = rand(2, 3, 5, 6)
        joint = block.joint_features(image, rand(2, 8, 5, 6, seed=1))
        dynamic = block.apply_kernels(image, block.predict_kernels(joint))
    assert torch.allclose(dynamic, nearest(image, rate), atol=1e-6)


@pytest.mark.parametrize("rate", [1, 3])
def test_softmax_kernels_sum_to_one_per_subpixel(rate):
    block = DynamicBlock(8, rate=rate, kernel_normalization="softmax")
    with torch.no_grad():
        joint = block.joint_features(rand(1, 3, 4, 5), rand(1, 8, 4, 5, seed=1))
        kernels = block.predict_kernels(joint)
    sums = kernels.view(1, 25, rate * rate, 4, 5).sum(dim=1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    assert (kernels > 0).all()
    model = tiny(3, kernel_normalization="softmax")
    assert model(rand(1, 3, 4, 4)).shape == (1, 3, 12, 12)


# --------------------------------------------------------------------------------------------
# memory formats and bf16


@pytest.mark.parametrize("scale", [2, 4])
def test_channels_last_matches_contiguous(scale):
    model = tiny(scale, channels=16, num_residual_blocks=2)
    lr = rand(2, 3, 7, 6)
    with torch.no_grad():
        reference = model(lr, blur=1.1, noise=12.0)
        out = model(lr.contiguous(memory_format=CL), blur=1.1, noise=12.0)
        model.to(memory_format=CL)
        out_cl_model = model(lr.contiguous(memory_format=CL), blur=1.1, noise=12.0)
    assert out.is_contiguous(memory_format=CL)
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.allclose(out_cl_model, reference, atol=1e-5)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CL])
def test_bf16_autocast_is_close_to_fp32(memory_format):
    model = tiny(4, channels=16, num_residual_blocks=2).to(memory_format=memory_format)
    lr = rand(2, 3, 8, 7).contiguous(memory_format=memory_format)
    hr = rand(2, 3, 32, 28, seed=1)
    with torch.no_grad():
        reference = model(lr, blur=1.3, noise=15.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(lr, blur=1.3, noise=15.0, return_all=True)
        loss = multistage_loss(hr, outputs)
    loss.backward()
    out = outputs[-1].float()
    assert torch.isfinite(out).all()
    assert (out - reference).abs().max() < 0.05
    assert (out - reference).abs().mean() < 0.01
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --------------------------------------------------------------------------------------------
# the model card


def test_module_docstring_is_a_model_card():
    doc = udvd_module.__doc__
    assert "\nDeviations\n----------\n" in doc
    for fact in ("CVPR 2020", "Eq. 4", "31.16/30.98", "UUDD", "udvd-lite", "5.57 M"):
        assert fact in doc, fact


def test_state_dict_keys_are_the_documented_ones():
    keys = {k.rsplit(".", 1)[0] for k in tiny(4).state_dict()}
    per_block = {"image_path.0", "image_path.2", "image_path.4", "kernel_head",
                 "residual_head.0", "residual_head.3"}
    expected = {"features.head", "features.tail", "features.body.0.conv1",
                "features.body.0.conv2", "feature_upsamplers.0.conv", "feature_upsamplers.1.conv"}
    expected |= {f"refinement.{m}.{name}" for m in range(4) for name in per_block}
    assert keys == expected
    assert "features.{head,tail}" in udvd_module.__doc__
