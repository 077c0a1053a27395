"""Synthetic degradations: kernels, blur/downsample/noise pipeline, PCA degradation maps."""

import importlib
import math

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F

from dynsr.degrade import (
    add_noise,
    analytic_x4_kernel,
    anisotropic_gaussian,
    bicubic_downsample,
    blur,
    center_of_mass,
    compute_pca_basis,
    degradation_map,
    degrade,
    div2krk_kernel,
    downsample_map,
    gaussian_blur,
    horizontal_ramp,
    isotropic_gaussian,
    kernel_code,
    kernel_from_code,
    load_kernel,
    load_pca_basis,
    random_anisotropic_kernel,
    sample_anisotropic_params,
    subsample,
)
from dynsr.degrade import pipeline as pipeline_module
from dynsr.degrade.degradation_map import _default_basis_path
from dynsr.ops import imresize, quantize

F64 = torch.float64


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    image = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).to(torch.float32)
    return image[None] / 255.0


# ----------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("size", [5, 11, 15, 16])
def test_kernels_sum_to_one_and_are_centred(size):
    middle = (size - 1) / 2
    kernels = [
        isotropic_gaussian(size, 1.3, dtype=F64),
        anisotropic_gaussian(size, 4.0, 0.5, 0.7, dtype=F64),
        random_anisotropic_kernel(size, 3, batch=8, dtype=F64),
    ]
    for k in kernels:
        assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones((), dtype=F64), atol=1e-12)
        assert (k >= 0).all()
        com = center_of_mass(k)
        assert torch.allclose(com, torch.full_like(com, middle), atol=1e-9)


def test_isotropic_equals_anisotropic_with_equal_variances():
    for sigma in (0.2, 0.7, 1.3, 2.6, 4.0):
        iso = isotropic_gaussian(15, sigma, dtype=F64)
        for theta in (0.0, 0.4, 2.0):
            aniso = anisotropic_gaussian(15, sigma**2, sigma**2, theta, dtype=F64)
            assert torch.allclose(iso, aniso, atol=1e-14)


def test_rotation_by_half_pi_transposes():
    k0 = anisotropic_gaussian(15, 6.0, 0.8, 0.0, dtype=F64)
    k90 = anisotropic_gaussian(15, 6.0, 0.8, math.pi / 2, dtype=F64)
    assert torch.allclose(k90, k0.T, atol=1e-14)
    assert torch.allclose(k90, anisotropic_gaussian(15, 0.8, 6.0, 0.0, dtype=F64), atol=1e-14)
    # theta = 0 stretches along x (columns): the middle row is wider than the middle column.
    assert k0[7, 3] > k0[3, 7]


def test_anisotropic_covariance_is_r_diag_rt():
    # On a grid wide enough not to truncate, the kernel's covariance in (x, y) = (col, row)
    # coordinates is Sigma = R(theta) diag(l1, l2) R(theta)^T (SRMD / KAIR convention).
    l1, l2, theta = 3.0, 0.7, 0.6
    k = anisotropic_gaussian(41, l1, l2, theta, dtype=F64)
    offsets = torch.arange(41, dtype=F64) - 20
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    cov = torch.tensor([[(k * x * x).sum(), (k * x * y).sum()],
                        [(k * x * y).sum(), (k * y * y).sum()]], dtype=F64)
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)],
                        [math.sin(theta), math.cos(theta)]], dtype=F64)
    expected = rot @ torch.diag(torch.tensor([l1, l2], dtype=F64)) @ rot.T
    assert torch.allclose(cov, expected, atol=1e-9)


def test_batched_kernels_equal_single_ones():
    sigmas = torch.tensor([0.3, 1.0, 2.5], dtype=F64)
    batch = isotropic_gaussian(15, sigmas, dtype=F64)
    assert batch.shape == (3, 15, 15)
    for i, s in enumerate(sigmas.tolist()):
        assert torch.allclose(batch[i], isotropic_gaussian(15, s, dtype=F64), atol=1e-15)
    l1, l2, theta = sample_anisotropic_params(4, 11)
    batch = anisotropic_gaussian(13, l1, l2, theta, dtype=F64)
    for i in range(4):
        single = anisotropic_gaussian(13, l1[i].item(), l2[i].item(), theta[i].item(), dtype=F64)
        assert torch.allclose(batch[i], single, atol=1e-15)


def test_zero_width_is_a_delta():
    k = isotropic_gaussian(7, 0.0)
    assert k[3, 3] == 1 and k.sum() == 1
    even = isotropic_gaussian(4, 0.0)
    assert torch.allclose(even[1:3, 1:3], torch.full((2, 2), 0.25))


def test_srmd_sampling_distribution_and_seed():
    l1, l2, theta = sample_anisotropic_params(5000, 0)
    assert 0 <= theta.min() and theta.max() <= math.pi
    assert 0.1 <= l1.min() and l1.max() <= 10
    assert (l2 >= 0.1).all() and (l2 <= l1).all()
    a = random_anisotropic_kernel(15, 42, batch=3)
    b = random_anisotropic_kernel(15, torch.Generator().manual_seed(42), batch=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, random_anisotropic_kernel(15, 43, batch=3))


def test_div2krk_kernels():
    k2 = div2krk_kernel(2, 7, batch=64, dtype=F64)
    k4 = div2krk_kernel(4, 7, batch=64, dtype=F64)
    assert k2.shape == (64, 11, 11) and k4.shape == (64, 31, 31)
    # DIV2KRK's grid: the centre of mass (s-1)/2 px down-right of the middle tap.
    for k, middle in ((k2, 5.5), (k4, 16.5)):
        assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones(64, dtype=F64), atol=1e-12)
        assert (k >= 0).all()
        assert (center_of_mass(k) - middle).abs().max() < 1e-3
    centred = div2krk_kernel(2, 7, batch=64, grid="middle", dtype=F64)
    assert (center_of_mass(centred) - 5.0).abs().max() < 1e-3
    with pytest.raises(ValueError, match="grid"):
        div2krk_kernel(2, 7, grid="matlab")
    # x4 is the analytic composition of the x2 kernel drawn from the same seed.
    assert torch.allclose(k4, analytic_x4_kernel(k2), atol=1e-15)
    # Multiplicative noise: not an exact Gaussian, so not point-symmetric.
    assert (k2 - k2.flip(-1, -2)).abs().max() > 1e-4
    # Reproducible with a seed, different with another; single kernel is (k, k).
    assert torch.equal(div2krk_kernel(2, 3), div2krk_kernel(2, 3))
    assert not torch.equal(div2krk_kernel(2, 3), div2krk_kernel(2, 4))
    assert div2krk_kernel(2, 3).shape == (11, 11)
    with pytest.raises(ValueError):
        div2krk_kernel(3, 0)


@pytest.mark.parametrize("scale", [2, 4])
def test_div2krk_lr_lies_on_the_bicubic_grid(scale):
    # On a plane every normalised kernel returns the plane at its centre of mass, so LR pixel
    # i of the direct (blur, keep 0, s, 2s, ...) degradation shows where it is centred: on
    # bicubic's LR grid (HR position s*i + (s-1)/2) for DIV2KRK's kernels.
    rows = torch.arange(160, dtype=F64)[:, None]
    cols = torch.arange(144, dtype=F64)[None, :]
    plane = (0.2 + 0.003 * rows + 0.002 * cols).expand(1, 1, 160, 144)
    bicubic = bicubic_downsample(plane, scale)
    inner = (slice(None), slice(None), slice(10, -10), slice(10, -10))
    for seed in range(3):
        aligned = degrade(plane, scale, div2krk_kernel(scale, seed, dtype=F64),
                          downsample="direct", quantize=False)
        assert torch.allclose(aligned[inner], bicubic[inner], atol=1e-6)
        centred = degrade(plane, scale, div2krk_kernel(scale, seed, grid="middle", dtype=F64),
                          downsample="direct", quantize=False)
        expected_gap = (0.003 + 0.002) * (scale - 1) / 2
        assert float((bicubic - centred)[inner].mean()) == pytest.approx(expected_gap, rel=1e-3)


def test_analytic_x4_kernel_equals_two_x2_steps():
    k2 = div2krk_kernel(2, 5, dtype=F64)
    hr = torch.rand(1, 2, 96, 88, generator=torch.Generator().manual_seed(0), dtype=F64)
    twice = degrade(degrade(hr, 2, k2, downsample="direct", quantize=False), 2, k2,
                    downsample="direct", quantize=False)
    once = degrade(hr, 4, analytic_x4_kernel(k2), downsample="direct", quantize=False)
    assert once.shape == twice.shape == (1, 2, 24, 22)
    # Equal away from the borders (padding differs between one and two steps).
    assert torch.allclose(once[..., 4:-4, 4:-4], twice[..., 4:-4, 4:-4], atol=1e-12)


# ----------------------------------------------------------------------------- PCA basis


def test_shipped_basis_equals_fresh_computation():
    fresh = compute_pca_basis()  # about 40 ms (plus LAPACK start-up on the first call)
    with np.load(_default_basis_path(), allow_pickle=False) as shipped:
        assert shipped["components"].dtype == np.float32
        np.testing.assert_allclose(shipped["components"], fresh["components"].astype(np.float32),
                                   rtol=0, atol=1e-7)
        np.testing.assert_allclose(shipped["eigenvalues"], fresh["eigenvalues"], rtol=1e-10)
        assert int(shipped["num_kernels"]) == 10000 and int(shipped["seed"]) == 0
        assert not bool(shipped["centered"])
        assert "row-major" in str(shipped["flattening"])
    assert _default_basis_path().stat().st_size < 20_000


def test_basis_is_orthonormal_with_fixed_signs():
    basis = load_pca_basis().to(F64)
    assert basis.shape == (15, 225)
    assert torch.allclose(basis @ basis.T, torch.eye(15, dtype=F64), atol=1e-6)
    magnitude = basis.abs()
    first_largest = (magnitude >= magnitude.amax(1, keepdim=True) * (1 - 1e-6)).int().argmax(1)
    assert (basis[torch.arange(15), first_largest] > 0).all()
    # Row-major flattening: the code is the basis times numpy's C-order ravel of the kernel.
    k = random_anisotropic_kernel(15, 1, dtype=F64)
    expected = load_pca_basis().numpy().astype(np.float64) @ k.numpy().ravel(order="C")
    np.testing.assert_allclose(kernel_code(k).numpy(), expected, atol=1e-12)


def _relative_error(kernels: torch.Tensor) -> torch.Tensor:
    pad = (15 - kernels.shape[-1]) // 2
    target = F.pad(kernels, (pad, pad, pad, pad))
    recon = kernel_from_code(kernel_code(kernels))
    return (recon - target).flatten(-2).norm(dim=-1) / target.flatten(-2).norm(dim=-1)


def test_pca_reconstruction_of_isotropic_kernels():
    # Measured with the shipped basis (uncentred, SRMD-style): max relative L2 error 0.0737
    # over UDVD's width range 0.2..3.0 (largest at 3.0), 0.245 over 0.2..4.0 (at 4.0, outside
    # the basis's lambda <= 10, i.e. width <= 3.16, and truncated by the 15x15 grid).
    udvd = isotropic_gaussian(15, torch.linspace(0.2, 3.0, 281, dtype=F64), dtype=F64)
    assert _relative_error(udvd).max() < 0.08
    wide = isotropic_gaussian(15, torch.linspace(0.2, 4.0, 381, dtype=F64), dtype=F64)
    assert _relative_error(wide).max() < 0.26
    assert _relative_error(isotropic_gaussian(15, torch.tensor([0.4, 1.0], dtype=F64),
                                              dtype=F64)).max() < 0.025


def test_pca_reconstruction_of_anisotropic_kernels():
    # Measured on 2000 kernels from SRMD's distribution (seed 123): mean 0.045, max 0.270.
    kernels = random_anisotropic_kernel(15, 123, batch=2000, dtype=F64)
    errors = _relative_error(kernels)
    assert errors.mean() < 0.05
    assert errors.max() < 0.28


def test_kernel_code_pads_small_kernels_and_refuses_large_ones():
    k11 = div2krk_kernel(2, 1)
    assert torch.allclose(kernel_code(k11), kernel_code(F.pad(k11, (2, 2, 2, 2))), atol=1e-7)
    assert kernel_code(torch.rand(2, 3, 13, 13)).shape == (2, 3, 15)
    with pytest.raises(ValueError, match="odd kernel sizes up to 15"):
        kernel_code(torch.rand(17, 17))
    with pytest.raises(ValueError, match="odd kernel sizes"):
        kernel_code(torch.rand(14, 14))


# ----------------------------------------------------------------------------- degradation map


def test_constant_degradation_map():
    kernels = random_anisotropic_kernel(15, 2, batch=2)
    dmap = degradation_map(kernels, torch.tensor([15.0, 50.0]), size=(6, 9))
    assert dmap.shape == (2, 16, 6, 9)
    assert torch.allclose(dmap[:, :15], kernel_code(kernels)[:, :, None, None].expand(2, 15, 6, 9))
    assert torch.allclose(dmap[:, 15, 0, 0], torch.tensor([15.0, 50.0]) / 255)
    by_width = degradation_map(width=1.3, noise_sigma=5.0, size=(4, 4))
    by_kernel = degradation_map(isotropic_gaussian(15, 1.3), 5.0, (4, 4))
    by_code = degradation_map(code=kernel_code(isotropic_gaussian(15, 1.3)), noise_sigma=5.0,
                              size=(4, 4))
    assert torch.allclose(by_width, by_kernel, atol=1e-7)
    assert torch.allclose(by_code, by_kernel)
    with pytest.raises(ValueError, match="size"):
        degradation_map(width=1.0, noise_sigma=0.0)
    with pytest.raises(ValueError, match="exactly one"):
        degradation_map(isotropic_gaussian(15, 1.0), width=1.0, size=(2, 2))


def test_spatially_variant_degradation_map():
    width_map = horizontal_ramp(5, 7, 0.2, 2.0)
    noise_map = horizontal_ramp(5, 7, 5.0, 50.0)
    assert torch.allclose(width_map[0, 0, :, 0], torch.full((5,), 0.2))
    assert torch.allclose(width_map[0, 0, 3], torch.linspace(0.2, 2.0, 7))
    dmap = degradation_map(width=width_map, noise_sigma=noise_map)
    assert dmap.shape == (1, 16, 5, 7)
    # Each pixel's code is the code of its own width; rows are identical.
    widths = torch.linspace(0.2, 2.0, 7)
    assert torch.allclose(dmap[0, :15, 2].T, kernel_code(isotropic_gaussian(15, widths)),
                          atol=1e-6)
    assert torch.equal(dmap[:, :, 0], dmap[:, :, 4])
    assert torch.allclose(dmap[0, 15, 0], torch.linspace(5.0, 50.0, 7) / 255)
    # Per-pixel kernels (B, k*k, H, W) give the same codes as the width map.
    kernels = isotropic_gaussian(15, width_map[:, 0]).flatten(-2).permute(0, 3, 1, 2)
    assert torch.allclose(degradation_map(kernels, noise_map), dmap, atol=1e-6)
    # A constant width map equals the constant description.
    flat = degradation_map(width=torch.full((1, 1, 5, 7), 1.3), noise_sigma=10.0)
    assert torch.allclose(flat, degradation_map(width=1.3, noise_sigma=10.0, size=(5, 7)),
                          atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        degradation_map(width=width_map, noise_sigma=horizontal_ramp(5, 8, 0.0, 1.0))


def test_downsample_map_takes_block_centres_of_a_ramp():
    ramp = horizontal_ramp(8, 12, 0.0, 11.0)  # value = column index
    lr = downsample_map(ramp, 3)
    assert lr.shape == (1, 1, 3, 4)
    assert torch.allclose(lr[0, 0, 0], torch.tensor([1.0, 4.0, 7.0, 10.0]))
    odd = downsample_map(horizontal_ramp(5, 5, 0.0, 4.0), 2)  # partial blocks at the edge
    assert torch.allclose(odd[0, 0, 0], torch.tensor([0.5, 2.5, 4.0]))


# ----------------------------------------------------------------------------- blur


def test_delta_kernel_is_identity(astronaut):
    delta = torch.zeros(15, 15)
    delta[7, 7] = 1
    assert torch.equal(blur(astronaut, delta), astronaut)
    assert torch.equal(blur(astronaut[0], delta), astronaut[0])
    assert torch.equal(blur(astronaut.expand(2, -1, -1, -1), delta.expand(2, 15, 15)),
                       astronaut.expand(2, -1, -1, -1))


def test_replicate_padding_keeps_constant_images_constant():
    flat = torch.full((2, 3, 20, 17), 0.37, dtype=F64)
    k = anisotropic_gaussian(15, 9.0, 2.0, 0.3, dtype=F64)
    assert torch.allclose(blur(flat, k), flat, atol=1e-14)
    assert torch.allclose(blur(flat, k, padding="symmetric"), flat, atol=1e-14)
    assert blur(flat, k, padding="zeros")[0, 0, 0, 0] < 0.3  # zeros darken the border


def test_blur_matches_scipy_correlate():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(2, 3, 21, 18, generator=torch.Generator().manual_seed(1), dtype=F64)
    k = div2krk_kernel(2, 9, dtype=F64)
    for padding, mode in (("replicate", "nearest"), ("symmetric", "reflect"),
                          ("zeros", "constant"), ("circular", "wrap")):
        ours = blur(x, k, padding).numpy()
        ref = np.stack([[ndimage.correlate(x[b, c].numpy(), k.numpy(), mode=mode)
                         for c in range(3)] for b in range(2)])
        np.testing.assert_allclose(ours, ref, atol=1e-12, err_msg=padding)
    # Even kernels: MATLAB's origin (k-1)//2, i.e. scipy's origin -1 for k = 4.
    k4 = torch.rand(4, 4, dtype=F64)
    ref = ndimage.correlate(x[0, 0].numpy(), k4.numpy(), mode="nearest", origin=-1)
    np.testing.assert_allclose(blur(x, k4)[0, 0].numpy(), ref, atol=1e-12)


def test_per_image_kernels_equal_separate_calls(astronaut):
    batch = torch.cat([astronaut[..., :64, :64], astronaut[..., 100:164, 200:264]])
    kernels = random_anisotropic_kernel(15, 5, batch=2)
    together = blur(batch, kernels)
    for i in range(2):
        assert torch.allclose(together[i], blur(batch[i], kernels[i]), atol=1e-6)
    assert torch.equal(blur(batch, kernels[:1]), blur(batch, kernels[0]))


def test_spatially_variant_blur_with_constant_width_equals_uniform(astronaut):
    x = astronaut[..., 200:264, 180:260]
    uniform = gaussian_blur(x, 1.7)
    varying = gaussian_blur(x, torch.full((1, 1, 64, 80), 1.7))
    assert (varying - uniform).abs().max() < 1e-5
    kernels = isotropic_gaussian(15, 1.7).reshape(1, 225, 1, 1).expand(1, 225, 64, 80)
    assert (blur(x, kernels) - uniform).abs().max() < 1e-5
    assert (blur(x, kernels, padding="symmetric") - blur(x, isotropic_gaussian(15, 1.7),
                                                           padding="symmetric")).abs().max() < 1e-5


def test_spatially_variant_blur_bands_agree(astronaut, monkeypatch):
    x = astronaut[..., :40, :50]
    widths = torch.rand(1, 1, 40, 50, generator=torch.Generator().manual_seed(0)) * 2.5 + 0.2
    whole = gaussian_blur(x, widths)
    monkeypatch.setattr(pipeline_module, "_PER_PIXEL_BAND_ELEMENTS", 225 * 64 * 7)
    assert torch.allclose(gaussian_blur(x, widths), whole, atol=1e-6)


def test_width_ramp_blurs_more_on_the_right():
    # White noise: how much of its variance survives measures the blur strength.
    x = torch.rand(1, 2, 64, 96, generator=torch.Generator().manual_seed(3))
    widths = horizontal_ramp(64, 96, 0.2, 2.0)
    blurred = gaussian_blur(x, widths)
    # Column j is filtered exactly as a uniform blur of column j's width filters it.
    for j in (0, 41, 95):
        uniform = gaussian_blur(x, widths[0, 0, 0, j].item())
        assert torch.allclose(blurred[..., j], uniform[..., j], atol=1e-5)
    column_std = blurred.std(dim=-2).mean(dim=(0, 1))
    thirds = [column_std[i * 32 : (i + 1) * 32].mean().item() for i in range(3)]
    # Measured: 0.198, 0.076, 0.049 (the unblurred noise has std 0.289).
    assert thirds[0] > 2 * thirds[1] and thirds[1] > 1.3 * thirds[2]
    assert torch.allclose(blurred[..., 0], x[..., 0], atol=1e-4)  # width 0.2: nearly a delta


# ----------------------------------------------------------------------------- degrade


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("downsample", ["bicubic", "direct"])
def test_degrade_shapes(scale, downsample):
    hr = torch.rand(2, 3, 37, 41, generator=torch.Generator().manual_seed(scale))
    lr = degrade(hr, scale, isotropic_gaussian(15, 1.3), noise=10.0, downsample=downsample,
                 seed=0)
    assert lr.shape == (2, 3, math.ceil(37 / scale), math.ceil(41 / scale))
    assert degrade(hr[0], scale, downsample=downsample).shape == lr.shape[1:]


def test_degrade_default_is_srmd_order(astronaut):
    hr = astronaut[..., :96, :120]
    k = isotropic_gaussian(15, 2.6)
    clean = degrade(hr, 3, k)
    expected = quantize(imresize(blur(hr, k), scale=1 / 3))
    assert torch.equal(clean, expected)
    noisy = degrade(hr, 3, k, noise=15.0, seed=4)
    assert torch.equal(noisy, add_noise(clean, 15.0, 4))
    assert torch.equal(bicubic_downsample(hr, 3), imresize(hr, scale=1 / 3))
    assert torch.equal(subsample(hr, 3, offset=1), hr[..., 1::3, 1::3])


def test_degrade_is_reproducible_with_a_seed(astronaut):
    hr = astronaut[..., :64, :64]
    a = degrade(hr, 2, width=1.0, noise=25.0, seed=123)
    b = degrade(hr, 2, width=1.0, noise=25.0, seed=123)
    c = degrade(hr, 2, width=1.0, noise=25.0, seed=124)
    assert a.numpy().tobytes() == b.numpy().tobytes()
    assert not torch.equal(a, c)
    d = degrade(hr, 2, width=1.0, noise=25.0, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, d)
    with pytest.raises(ValueError, match="seed or a generator"):
        degrade(hr, 2, noise=1.0, seed=1, generator=torch.Generator())


def test_noise_statistics():
    clean = torch.full((2, 3, 256, 256), 0.5)
    lr = degrade(clean, 1, noise=torch.tensor([5.0, 50.0]), quantize=False, seed=0)
    residual = (lr - clean) * 255
    for b, sigma in enumerate((5.0, 50.0)):
        assert abs(residual[b].std().item() - sigma) < 0.01 * sigma
        assert abs(residual[b].mean().item()) < 0.01 * sigma
    # Per-pixel noise map on the LR grid: each column has its own level.
    noise_map = horizontal_ramp(128, 128, 5.0, 50.0)
    lr = degrade(torch.full((1, 3, 256, 256), 0.5), 2, noise=noise_map, seed=1)
    residual = (lr - 0.5) * 255
    assert abs(residual[..., :8].std().item() - 5.0 - 45 * 3.5 / 127) < 0.2
    assert abs(residual[..., -8:].std().item() - 50.0 + 45 * 3.5 / 127) < 1.5
    with pytest.raises(ValueError, match="LR grid"):
        degrade(torch.rand(1, 3, 64, 64), 2, noise=horizontal_ramp(64, 64, 5.0, 50.0), seed=0)


def test_quantisation_onto_the_8bit_grid(astronaut):
    hr = astronaut[..., :80, :80]
    lr = degrade(hr, 2, width=1.3)
    assert torch.allclose(lr * 255, (lr * 255).round(), atol=1e-4)
    noisy = degrade(hr, 2, width=1.3, noise=30.0, seed=0)
    assert not torch.allclose(noisy * 255, (noisy * 255).round(), atol=1e-3)
    assert noisy.min() < 0 or noisy.max() > 1  # SRMD: no clipping after the noise
    clipped = degrade(hr, 2, width=1.3, noise=30.0, seed=0, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(clipped, noisy.clamp(0, 1))
    saved = degrade(hr, 2, width=1.3, noise=30.0, seed=0, requantize=True)
    assert torch.allclose(saved * 255, (saved * 255).round(), atol=1e-4)
    assert saved.min() >= 0 and saved.max() <= 1
    unrounded = degrade(hr, 2, width=1.3, quantize=False)
    assert not torch.allclose(unrounded * 255, (unrounded * 255).round(), atol=1e-3)


def test_udvd_spatially_variant_example(astronaut):
    hr = astronaut[..., :96, :132]
    scale = 3
    width_hr = horizontal_ramp(96, 132, 0.2, 2.0)
    noise_lr = horizontal_ramp(32, 44, 5.0, 50.0)
    lr = degrade(hr, scale, width=width_hr, noise=noise_lr, seed=0)
    dmap = degradation_map(width=downsample_map(width_hr, scale), noise_sigma=noise_lr)
    assert lr.shape == (1, 3, 32, 44) and dmap.shape == (1, 16, 32, 44)
    # The LR column j was blurred around HR column 3j + 1, whose width the map describes.
    expected = kernel_code(isotropic_gaussian(15, width_hr[0, 0, 0, 3 * 10 + 1]))
    assert torch.allclose(dmap[0, :15, 5, 10], expected, atol=1e-6)


# ----------------------------------------------------------------------------- load_kernel


def test_load_kernel_formats(tmp_path):
    k = div2krk_kernel(2, 0, dtype=F64).numpy() * 3  # not normalised on disk
    np.save(tmp_path / "k.npy", k)
    np.savez(tmp_path / "k.npz", kernel=k, other=np.zeros(3))
    np.savetxt(tmp_path / "k.txt", k)
    np.savetxt(tmp_path / "k.csv", k, delimiter=",")
    np.save(tmp_path / "k3d.npy", k[:, :, None])
    for name in ("k.npy", "k.npz", "k.txt", "k.csv", "k3d.npy"):
        loaded = load_kernel(tmp_path / name, dtype=F64)
        assert loaded.shape == (11, 11)
        np.testing.assert_allclose(loaded.numpy(), k / k.sum(), atol=1e-15, err_msg=name)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.npy", None, "no such file"),
        ("rect.npy", np.ones((5, 7)), "square"),
        ("even.npy", np.ones((4, 4)), "odd size"),
        ("negative.npy", -np.ones((3, 3)), "positive sum"),
        ("nan.npy", np.array([[0, 1, 0], [1, np.nan, 1], [0, 1, 0]]), "NaN"),
        ("cube.npy", np.ones((3, 3, 3)), "2-D"),
        ("ragged.txt", "1 2 3\n4 5\n", "different numbers"),
        ("words.csv", "1,2,x\n1,2,3\n1,2,3\n", "not a number"),
        ("kernel.mat", b"MATLAB", "unsupported"),
    ],
)
def test_load_kernel_rejects_bad_files(tmp_path, name, content, reason):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_kernel(path)
    message = str(info.value)
    assert str(path) in message and reason in message and "\n" not in message


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_noise_level_estimate_recovers_added_gaussian_noise(name):
    from dynsr.degrade.noise_level import estimate_noise_level

    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).double() / 255
    image = image[..., :256, :256]
    gen = torch.Generator().manual_seed(0)
    assert estimate_noise_level(image) < 2.5  # a clean photo
    for sigma in (5.0, 15.0, 50.0):
        noisy = image + torch.randn(image.shape, generator=gen, dtype=torch.float64) * sigma / 255
        assert estimate_noise_level(noisy) == pytest.approx(sigma, rel=0.07 if sigma == 5 else 0.02)
    with pytest.raises(ValueError, match="too small"):
        estimate_noise_level(image[..., :10, :10])


def test_isotropic_gaussian_field_is_isotropic_gaussian_per_pixel():
    from dynsr.degrade import isotropic_gaussian, isotropic_gaussian_field

    widths = torch.tensor([[0.0, 0.2, 0.7], [1.3, 2.6, 3.0]], dtype=torch.float64)
    field = isotropic_gaussian_field(widths[None, None], 15)  # (1, 225, 2, 3)
    assert field.shape == (1, 225, 2, 3)
    for i in range(2):
        for j in range(3):
            direct = isotropic_gaussian(15, widths[i, j:j + 1], dtype=torch.float64)[0]
            assert torch.allclose(field[0, :, i, j].reshape(15, 15), direct, atol=1e-14)


@pytest.mark.parametrize("per_image", [False, True])
def test_float64_blur_with_a_large_kernel_sums_shifts_to_the_same_values(monkeypatch, per_image):
    # Float64 convolution would unfold the image k² times (GBs for DIV2KRK's 31x31 x4
    # kernels); past a size, blur sums shifted images instead. Forced here on a small image.
    # The two sum the 961 taps in different orders: bytes equal on an Intel Xeon, 1.1e-13
    # apart (of values up to 308, i.e. a few ulp) on an AMD EPYC.
    pipeline = importlib.import_module("dynsr.degrade.pipeline")
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 40, 44, generator=gen, dtype=torch.float64)
    shape = (2, 31, 31) if per_image else (31, 31)
    kernel = torch.rand(*shape, generator=gen, dtype=torch.float64)
    reference = pipeline.blur(x, kernel)
    reference32 = pipeline.blur(x.float(), kernel.float())
    monkeypatch.setattr(pipeline, "_UNFOLD_BYTES", 0)
    shifted = pipeline.blur(x, kernel)
    assert torch.allclose(shifted, reference, rtol=1e-14, atol=1e-12)
    # Float32 (oneDNN, which does not unfold) keeps its convolution.
    assert torch.equal(pipeline.blur(x.float(), kernel.float()), reference32)


def test_separable_blur_is_blur_by_the_outer_product():
    from dynsr.degrade import separable_blur

    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 30, 41, generator=gen, dtype=torch.float64)
    taps = torch.rand(7, generator=gen, dtype=torch.float64)
    for padding in ("replicate", "reflect"):
        full = blur(x, taps[:, None] * taps[None, :], padding)
        assert torch.allclose(separable_blur(x, taps, padding), full, atol=1e-12)
        assert torch.allclose(separable_blur(x[0], taps, padding), full[0], atol=1e-12)
    with pytest.raises(ValueError, match="odd length"):
        separable_blur(x, taps[:6])
