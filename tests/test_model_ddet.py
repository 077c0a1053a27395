"""Tests for dynsr.models.ddet: shapes, parameter counts, gradients, locality of the dynamic
kernels, Y-mode chroma, channels_last / bf16, and the model card."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import dynsr.models.ddet as ddet_module
from dynsr.models import create, get_spec
from dynsr.models.complexity import count_parameters
from dynsr.models.ddet import DDet, DDetCore
from dynsr.models.inference import prepare_model, upscale_batch
from dynsr.ops.color import rgb_to_ycbcr
from dynsr.ops.dynamic import dynamic_filter
from dynsr.ops.resize import imresize

NAMES = ("ddet", "ddet-release", "ddet-rgb", "kpn7", "kpn7-pr", "kpn7-pr-cdm")
SCALES = (2, 3, 4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(name: str, scale: int = 2, **config) -> DDet:
    torch.manual_seed(0)
    return create(name, scale=scale, **config).eval()


def rand(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def chebyshev_distance(size: tuple[int, int], rows: range, cols: range) -> torch.Tensor:
    """(H, W) map of the Chebyshev distance of every pixel to the box rows × cols."""

    def axis(n: int, span: range) -> torch.Tensor:
        idx = torch.arange(n)
        return torch.clamp(torch.maximum(span.start - idx, idx - (span.stop - 1)), min=0)

    return torch.maximum(axis(size[0], rows)[:, None], axis(size[1], cols)[None, :])


# --------------------------------------------------------------------------------------------
# registry, shapes


def test_every_name_is_registered_for_x2_x3_x4():
    for name in NAMES:
        spec = get_spec(name)
        assert spec.scales == SCALES
        assert "DDet" in spec.paper


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name: str, scale: int):
    model = make(name, scale)
    # LR 12×10 (B=2) and 13×11 (B=1): HR sizes that are and are not multiples of 4.
    for batch, (h, w) in ((2, (12, 10)), (1, (13, 11))):
        with torch.no_grad():
            sr = model(rand(batch, 3, h, w))
        assert sr.shape == (batch, 3, scale * h, scale * w)
        assert sr.dtype == torch.float32
        assert torch.isfinite(sr).all()


@pytest.mark.parametrize("in_channels", [1, 3])
def test_core_keeps_the_size_for_any_height_and_width(in_channels: int):
    torch.manual_seed(0)
    core = DDetCore(in_channels=in_channels, num_blocks=2).eval()
    for size in ((5, 7), (8, 8), (17, 6)):
        x = rand(2, in_channels, *size)
        with torch.no_grad():
            assert core(x).shape == x.shape
            assert all(k.shape == (2, s * s, *size)
                       for k, s in zip(core.predict_kernels(x), core.kernel_sizes, strict=True))


def test_forward_is_bicubic_then_forward_prescaled():
    model = make("ddet", 3)
    lr = rand(1, 3, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(lr), model.forward_prescaled(imresize(lr, 3)))


def test_rejects_bad_configs_and_inputs():
    with pytest.raises(ValueError, match="in_channels"):
        create("ddet", scale=2, in_channels=2)
    with pytest.raises(ValueError, match="odd"):
        create("ddet", scale=2, kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="head_hidden"):
        create("ddet", scale=2, head_hidden=(0, 49))
    with pytest.raises(ValueError, match="RGB"):
        make("ddet")(rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        make("ddet").core(rand(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------
# wiring, against a functional restatement of METHODS.md written independently of the module


def reference_core(core: DDetCore, x: torch.Tensor) -> torch.Tensor:
    params = dict(core.named_parameters())

    def conv(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, params[f"{name}.weight"], params[f"{name}.bias"], padding=1)

    b, c, h, w = x.shape
    padded = F.pad(x, (0, 4 * math.ceil(w / 4) - w, 0, 4 * math.ceil(h / 4) - h),
                   mode="replicate")
    first = conv("trunk_in", F.pixel_unshuffle(padded, 4))  # no ReLU
    feat = first
    for i in range(len(core.blocks)):
        feat = feat + conv(f"blocks.{i}.conv2", F.relu(conv(f"blocks.{i}.conv1", feat)))
    feat = F.pixel_shuffle(conv("trunk_out", feat) + first, 4)[..., :h, :w]
    feat = F.relu(conv("predictor.2", F.relu(conv("predictor.0", feat))))
    image = x
    if core.cdm is not None:
        image = x + conv("cdm.4", F.relu(conv("cdm.2", F.relu(conv("cdm.0", x)))))
    out = torch.zeros_like(x)
    for n, k in enumerate(core.kernel_sizes):
        if len(core.kernel_heads[n]) == 1:
            kernel = conv(f"kernel_heads.{n}.0", feat)
        else:
            kernel = conv(f"kernel_heads.{n}.2", F.relu(conv(f"kernel_heads.{n}.0", feat)))
        patches = F.unfold(image, k, padding=k // 2).view(b, c, k * k, h, w)
        out = out + (patches * kernel.unsqueeze(1)).sum(2)
    if core.refine is not None:
        out = conv("refine.2", F.relu(conv("refine.0", out)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_core_matches_a_functional_reference(name: str):
    core = make(name, num_blocks=3).core.double()
    for size in ((16, 12), (13, 11)):  # a multiple of 4, and one needing the padding
        x = rand(2, core.in_channels, *size).double()
        with torch.no_grad():
            torch.testing.assert_close(core(x), reference_core(core, x), rtol=1e-10,
                                       atol=1e-12)


# --------------------------------------------------------------------------------------------
# parameter counts
#
# 3×3 conv a→b: 9ab + b. Trunk (Y): conv 16→64 (9,280) + 32 block convs and the conv before
# the long skip, 33 × 36,928 = 1,218,624 → 1,227,904. After the shuffle: conv 4→64 (2,368)
# and conv 64→M (36,928 for M = 64; 73,856 for M = 128). Heads (M = 64): 3×3 5,193; 5×5
# 14,425; 7×7 28,273; 9×9 46,737; release 7×7 28,273 + 21,658; release 5×5 18,464 + 7,225.
# CDM 640 + 36,928 + 577 = 38,145. PR 640 + 577 = 1,217.
EXPECTED_PARAMS = {
    # name: (x2 with M = 64, x3 and x4 with M = 128)
    "ddet": (1_354_453, 1_439_189),
    "ddet-release": (1_428_919, 1_559_159),
    "ddet-rgb": (1_377_497, 1_462_233),
    "kpn7": (1_295_473, 1_360_625),
    "kpn7-pr": (1_296_690, 1_361_842),
    "kpn7-pr-cdm": (1_334_835, 1_399_987),
}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts(name: str):
    counts = [count_parameters(create(name, scale=s)) for s in SCALES]
    x2, x34 = EXPECTED_PARAMS[name]
    assert counts == [x2, x34, x34]


def test_full_model_size_matches_the_paper():
    # Table III: 5.7 MB = fp32 bytes / 10⁶ (its KPN(K=7) row, 5.2 MB, is 1,295,473 params).
    assert round(count_parameters(create("kpn7", scale=2)) * 4 / 1e6, 1) == 5.2
    assert round(count_parameters(create("ddet-release", scale=2)) * 4 / 1e6, 1) == 5.7
    for scale in SCALES:
        n = count_parameters(create("ddet", scale=scale))
        assert abs(n - 1.4e6) <= 0.05 * 1.4e6


def test_ablation_variants_have_exactly_their_components():
    plain, pr, cdm = make("kpn7"), make("kpn7-pr"), make("kpn7-pr-cdm")
    assert plain.core.cdm is None and plain.core.refine is None
    assert pr.core.cdm is None and pr.core.refine is not None
    assert cdm.core.cdm is not None and cdm.core.refine is not None
    assert plain.core.kernel_sizes == pr.core.kernel_sizes == cdm.core.kernel_sizes == (7,)
    assert make("ddet").core.kernel_sizes == (3, 5, 7)
    release = make("ddet-release").core
    assert release.kernel_sizes == (9, 7, 5)
    assert [len(head) for head in release.kernel_heads] == [1, 3, 3]
    # Without CDM the kernels filter the input itself.
    x = rand(1, 1, 8, 8)
    assert plain.core.reveal(x) is x


# --------------------------------------------------------------------------------------------
# gradients


def _step_gradients(model: DDet, seed: int) -> list[str]:
    """Names of the parameters that get no gradient from one random loss."""
    model.zero_grad(set_to_none=True)
    sr = model(rand(2, 3, 8, 10, seed=seed))
    weights = rand(*sr.shape, seed=seed + 1) - 0.5  # no symmetry for gradients to cancel in
    (sr * weights).sum().backward()
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]


@pytest.mark.parametrize("name", ["ddet", "ddet-release", "ddet-rgb"])
def test_gradients_reach_every_parameter(name: str):
    assert not _step_gradients(make(name, identity_init=False).train(), seed=1)
    # From the identity start, CDM's inner layers wait one step for its zeroed last conv.
    model = make(name).train()
    assert set(_step_gradients(model, seed=1)) == {
        "core.cdm.0.weight", "core.cdm.0.bias", "core.cdm.2.weight", "core.cdm.2.bias"}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not _step_gradients(model, seed=3)


@pytest.mark.parametrize("name", ["ddet", "ddet-rgb", "kpn7-pr", "kpn7-pr-cdm"])
def test_untrained_ddet_starts_as_the_plain_filtering(name: str):
    """identity_init: CDM adds nothing and PR passes its input through, so the untrained
    network is the per-pixel filtering of its input with the predicted kernels (a KPN)."""
    core = make(name).core
    x = rand(1, core.in_channels, 12, 16)
    with torch.no_grad():
        plain = core.aggregate(x, core.predict_kernels(x))
        torch.testing.assert_close(core(x), plain, rtol=0, atol=1e-6)
        assert not torch.allclose(make(name, identity_init=False).core(x), plain, atol=1e-3)


# --------------------------------------------------------------------------------------------
# locality of the dynamic kernels


def trunk_reach(num_blocks: int, head_depth: int) -> int:
    """How far (in HR pixels, per axis) an input pixel can move a predicted kernel.

    The 1/4-resolution trunk has 2·num_blocks + 2 convs of radius 1 in low-res cells; a pixel
    in cell c reaches cells c ± n, i.e. HR pixels up to 4n + 3 away once shuffled back. Then
    the two full-resolution convs and the head's convs add one pixel each.
    """
    n = 2 * num_blocks + 2
    return 4 * n + 3 + 2 + head_depth


@pytest.mark.parametrize("name", ["ddet", "ddet-release"])
def test_output_changes_stay_within_the_receptive_field(name: str):
    core = make(name).core
    head_depth = max(len(head) for head in core.kernel_heads) // 2 + 1
    k_max = max(core.kernel_sizes)
    # Output pixel p = F_PR(Σ_n K_n(p) · I_Rev(p + d)), |d| ≤ k//2: the kernel at p reaches
    # trunk_reach, I_Rev reaches the 3 CDM convs + k//2; post-refinement adds 2.
    radius = max(trunk_reach(16, head_depth), 3 + k_max // 2) + 2
    assert radius == (144 if name == "ddet" else 145)
    size = (radius + 16, radius + 12)
    rows, cols = range(2, 4), range(3, 5)
    x = rand(1, 1, *size) * 0.8 + 0.1
    moved = x.clone()
    moved[..., rows.start : rows.stop, cols.start : cols.stop] += 0.2
    with torch.no_grad():
        change = (core(moved) - core(x)).abs()[0, 0]
    dist = chebyshev_distance(size, rows, cols)
    assert (dist > radius).any()
    assert change[dist > radius].max() == 0
    # The kernels do use the trunk's wide context: changes reach far beyond what the image
    # path alone (CDM + filtering + PR: 3 + k//2 + 2 pixels) could explain.
    assert change[dist > 3 + k_max // 2 + 2].max() > 0
    assert change[dist > radius // 2].max() > 0


@pytest.mark.parametrize("name", ["ddet", "ddet-release", "ddet-rgb"])
def test_filtering_with_fixed_kernels_is_per_pixel_and_local(name: str):
    core = make(name).core
    c = core.in_channels
    x = rand(1, c, 20, 24)
    with torch.no_grad():
        kernels = core.predict_kernels(x)
        image = core.reveal(x)
        base = core.aggregate(image, kernels)
        q, delta = (9, 13), 0.5
        moved = image.clone()
        moved[:, :, q[0], q[1]] += delta
        change = core.aggregate(moved, kernels) - base

    # Expected: output p moves by delta · Σ_n K_n(p)[tap pointing at q], and only where q is
    # inside p's k_n × k_n window. Built pixel by pixel from each pixel's own kernel.
    expected = torch.zeros(20, 24)
    for kernel, k in zip(kernels, core.kernel_sizes, strict=True):
        p = k // 2
        for i in range(q[0] - p, q[0] + p + 1):
            for j in range(q[1] - p, q[1] + p + 1):
                tap = (q[0] - i + p) * k + (q[1] - j + p)
                expected[i, j] += delta * kernel[0, tap, i, j]
    for ch in range(c):  # kernels are shared by the channels; only q's channels moved
        torch.testing.assert_close(change[0, ch], expected, rtol=1e-4, atol=1e-6)

    reach = max(core.kernel_sizes) // 2
    dist = chebyshev_distance((20, 24), range(q[0], q[0] + 1), range(q[1], q[1] + 1))
    assert change[0, 0][dist > reach].abs().max() == 0
    assert change[0, 0][dist <= reach].abs().min() > 0

    # Each kernel size alone reaches exactly k//2.
    for kernel, k in zip(kernels, core.kernel_sizes, strict=True):
        with torch.no_grad():
            alone = dynamic_filter(moved, kernel, k) - dynamic_filter(image, kernel, k)
        assert alone[0, 0][dist > k // 2].abs().max() == 0
        assert alone[0, 0][dist <= k // 2].abs().min() > 0

    # Different pixels get different kernels.
    for kernel in kernels:
        assert not torch.allclose(kernel[0, :, 5, 6], kernel[0, :, 14, 17], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------------------------
# colour handling


@pytest.mark.parametrize("name", ["ddet", "ddet-release", "kpn7"])
def test_y_mode_keeps_the_bicubic_chroma(name: str):
    model = make(name, 3)
    lr = rand(2, 3, 10, 9)
    seen = []
    model.core.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    with torch.no_grad():
        sr = model(lr)
    bicubic = rgb_to_ycbcr(imresize(lr, 3))
    sr_ycbcr = rgb_to_ycbcr(sr)
    torch.testing.assert_close(sr_ycbcr[:, 1:], bicubic[:, 1:], rtol=0, atol=1e-3)
    assert not torch.allclose(sr_ycbcr[:, :1], bicubic[:, :1], atol=1.0)
    # The network sees Y on the release's scale: studio-range Y / 255.
    (luma,) = seen
    torch.testing.assert_close(luma, bicubic[:, :1] / 255)
    assert luma.shape[1] == 1


def test_rgb_mode_changes_every_channel():
    model = make("ddet-rgb")
    lr = rand(1, 3, 8, 8)
    with torch.no_grad():
        sr = model(lr)
    change = (rgb_to_ycbcr(sr) - rgb_to_ycbcr(imresize(lr, 2))).abs().amax(dim=(0, 2, 3))
    assert (change > 1.0).all()


# --------------------------------------------------------------------------------------------
# fast paths


@pytest.mark.parametrize("name", ["ddet", "ddet-release", "ddet-rgb"])
def test_channels_last_and_bf16_autocast(name: str):
    lr = rand(2, 3, 14, 11)
    with torch.no_grad():
        reference = make(name)(lr)
    fast = prepare_model(make(name), channels_last=True)
    sr_cl = upscale_batch(fast, lr, channels_last=True)
    torch.testing.assert_close(sr_cl, reference, rtol=1e-4, atol=1e-4)
    sr_bf16 = upscale_batch(fast, lr, precision="bf16", channels_last=True)
    assert sr_bf16.dtype == torch.float32 and torch.isfinite(sr_bf16).all()
    torch.testing.assert_close(sr_bf16, reference, rtol=0, atol=0.01)  # 2.5 grey levels
    # Direct call under autocast with a channels_last input, as a trainer would.
    x = imresize(lr, 2).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct = fast.forward_prescaled(x)
    torch.testing.assert_close(direct, sr_bf16)
    if fast.in_channels == 1:
        # Only Y goes through bf16: the chroma is still the bicubic one to float precision.
        chroma = rgb_to_ycbcr(sr_bf16)[:, 1:]
        torch.testing.assert_close(chroma, rgb_to_ycbcr(imresize(lr, 2))[:, 1:], rtol=0,
                                   atol=1e-3)


# --------------------------------------------------------------------------------------------
# model card


def test_model_card_has_a_deviations_section():
    doc = ddet_module.__doc__
    assert "\nDeviations\n----------\n" in doc
    deviations = doc.split("\nDeviations\n----------\n", 1)[1]
    assert deviations.count("\n1. ") == 1 and "\n8. " in deviations
    for fact in ("Shi", "IEEE Signal Processing Letters", "Eq. 9", "34.37", "5.7 MB"):
        assert fact in doc
