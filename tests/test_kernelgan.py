"""KernelGAN: composed G_DN = layer-by-layer G_DN, priors, post-processing, estimation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynsr.cli.main import main
from dynsr.degrade import analytic_x4_kernel, blur, center_of_mass, isotropic_gaussian, subsample
from dynsr.io import write_image
from dynsr.zeroshot.kernelgan import (
    DeepLinearGenerator,
    KernelPriors,
    PatchDiscriminator,
    PriorSchedule,
    _box_mean,
    bicubic_x2_kernel,
    boundary_mask,
    crop_probabilities,
    crop_sampler,
    estimate_kernel,
    post_process_kernel,
)

torch.set_num_threads(1)


def _grads(model: DeepLinearGenerator, x: torch.Tensor, composed: bool, target: torch.Tensor):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    model.composed = composed
    out = model(x)
    # A non-trivial scalar so every output value gets a different gradient weight.
    (out * target).sum().backward()
    return out.detach(), [w.grad.clone() for w in model.weights], x.grad.clone()


def test_composed_generator_matches_layers_in_output_and_gradients():
    gen = torch.Generator().manual_seed(0)
    model = DeepLinearGenerator().double()
    model.reset_parameters(gen)
    x = torch.rand(2, 3, 37, 42, dtype=torch.float64, generator=gen)
    shape = (2, 3, (37 - 13) // 2 + 1, (42 - 13) // 2 + 1)
    target = torch.randn(shape, dtype=torch.float64, generator=gen)
    out_layers, w_layers, x_layers = _grads(model, x, False, target)
    out_comp, w_comp, x_comp = _grads(model, x, True, target)
    assert out_layers.shape == shape
    torch.testing.assert_close(out_comp, out_layers, rtol=0, atol=1e-10)
    torch.testing.assert_close(x_comp, x_layers, rtol=0, atol=1e-10)
    for grad_comp, grad_layers in zip(w_comp, w_layers, strict=True):
        scale = grad_layers.abs().max()
        torch.testing.assert_close(grad_comp / scale, grad_layers / scale, rtol=0, atol=1e-10)


def test_composed_kernel_is_the_correlation_kernel_of_the_network():
    model = DeepLinearGenerator().double()
    x = torch.rand(1, 1, 31, 31, dtype=torch.float64)
    kernel = model.kernel().detach()
    assert kernel.shape == (13, 13)
    # blur (correlation, middle origin) + taking every 2nd pixel from 6 = G_DN's valid output.
    expected = subsample(blur(x, kernel, padding="zeros")[..., 6:-6, 6:-6], 2)
    torch.testing.assert_close(model(x).detach(), expected, rtol=0, atol=1e-12)


def test_bicubic_prior_kernel_is_matlab_x2_bicubic():
    k = bicubic_x2_kernel(torch.float64)
    # Values in KernelGAN's (and DualSR's) loss.py table.
    assert k[3, 3].item() == pytest.approx(0.1880035400390630, abs=1e-12)
    assert k[0, 0].item() == pytest.approx(0.0001373291015625, abs=1e-12)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_boundary_mask_zero_in_the_middle_and_growing_outwards():
    mask = boundary_mask(13)
    assert mask[2:11, 2:11].abs().max() == 0
    assert mask[0, 0] > mask[0, 6] > 0
    # Corner: 30 * (1 - exp(-(6^2 + 6^2) / (2 * 13^2))).
    assert mask[0, 0].item() == pytest.approx(30 * (1 - math.exp(-72 / 338)), rel=1e-6)


def test_priors_and_schedule_switch_constraints_on():
    priors = KernelPriors()
    schedule = PriorSchedule(lr_divisor=4.0)
    model = DeepLinearGenerator()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    x = torch.rand(1, 3, 40, 40)
    kernel = model.kernel()
    loss = priors(kernel, x, model.forward_composed(x, kernel))
    assert torch.isfinite(loss)
    assert set(priors.terms) == {"bicubic", "sum_to_one", "boundaries", "centralized", "sparse"}
    priors.bicubic_value = 0.1  # pretend G_DN matches bicubic downscaling
    for iteration in range(1, 801):
        schedule.update(iteration, priors, [opt])
    # Similar at iteration 3, then / 100 at 200, 400 (< 5e-3: constraints on), 600, 800.
    assert priors.bicubic == pytest.approx(5e-6)
    assert (priors.centralized, priors.sparse) == (1.0, 5.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 / 4)


def test_post_processing_zeroes_small_values_and_centres():
    kernel = isotropic_gaussian(13, 1.5, dtype=torch.float64)
    kernel = torch.roll(kernel, shifts=(1, 0), dims=(0, 1)) + 1e-4  # off-centre, small floor
    out = post_process_kernel(kernel, n=40)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (out >= 0).all()
    # KernelGAN's grid: half a pixel down-right of the middle tap.
    wanted = (out.shape[-1] - 1) / 2 + 0.5
    torch.testing.assert_close(center_of_mass(out), torch.tensor([wanted, wanted],
                               dtype=torch.float64), rtol=0, atol=2e-3)
    assert int((out > 0).sum()) < kernel.numel()  # the floor was removed


def test_crop_sampler_prefers_textured_areas_and_avoids_the_border():
    image = torch.full((3, 80, 80), 0.5)
    texture = torch.rand(3, 30, 30, generator=torch.Generator().manual_seed(1))
    image[:, 45:75, 45:75] = texture
    sampler = crop_sampler(image, 20, torch.Generator().manual_seed(0))
    corners = [sampler() for _ in range(50)]
    for top, left in corners:
        assert 10 <= top and top + 20 <= 70 and 10 <= left and left + 20 <= 70
        assert top % 2 == 0 and left % 2 == 0
    assert sum(top > 30 and left > 30 for top, left in corners) > 40


def test_crop_sampler_draws_from_its_probabilities():
    # Inverse-CDF draws must follow crop_probabilities: never a zero-probability corner, and
    # frequencies within sampling noise of the probabilities (40,000 draws, fixed seed).
    image = torch.rand(3, 40, 44, generator=torch.Generator().manual_seed(2))
    image[:, :, :20] = 0.5  # a flat left part: corners there score 0 and must never be drawn
    probabilities = crop_probabilities(image, 12, border=4)
    sampler = crop_sampler(image, 12, torch.Generator().manual_seed(0), border=4)
    counts = torch.zeros_like(probabilities)
    for _ in range(40_000):
        top, left = sampler()
        counts[top - 4, left - 4] += 1
    assert not bool(counts[probabilities == 0].any())
    # Pearson's chi-square over the possible corners: about its degrees of freedom (k - 1)
    # for the right distribution, standard deviation sqrt(2 (k - 1)); 5 of them allowed.
    possible = probabilities > 0
    expected = probabilities[possible] * counts.sum()
    chi_square = float(((counts[possible] - expected) ** 2 / expected).sum())
    dof = int(possible.sum()) - 1
    assert chi_square < dof + 5 * (2 * dof) ** 0.5, (chi_square, dof)


def test_box_mean_matches_average_pooling():
    x = torch.rand(37, 41, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for size in (1, 4, 16):
        torch.testing.assert_close(_box_mean(x, size),
                                   F.avg_pool2d(x[None, None], size, stride=1)[0, 0],
                                   rtol=0, atol=1e-12)


def test_discriminator_output_in_unit_range():
    out = PatchDiscriminator()(torch.rand(2, 3, 20, 20))
    assert out.shape == (2, 1, 14, 14)
    assert ((out > 0) & (out < 1)).all()


def test_estimate_kernel_repeatable_and_normalised():
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(3, 64, 64, generator=gen)
    image = blur(image, isotropic_gaussian(7, 1.0))
    state = torch.get_rng_state()
    k2 = estimate_kernel(image, 2, iterations=4, seed=5, crop=40)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    again = estimate_kernel(image, 2, iterations=4, seed=5, crop=40)
    assert torch.equal(k2, again)
    assert k2.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert k2.shape[-1] % 2 == 1 and k2.shape[-1] >= 13
    k4 = estimate_kernel(image, 4, iterations=4, seed=5, crop=40)
    torch.testing.assert_close(k4, analytic_x4_kernel(k2))


def test_estimate_kernel_command(tmp_path):
    image = blur(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2)),
                 isotropic_gaussian(7, 1.0))
    write_image(tmp_path / "in.png", image)
    out = tmp_path / "out"
    assert main(["estimate-kernel", str(tmp_path / "in.png"), "--scale", "4", "-o", str(out),
                 "--iterations", "3"]) == 0
    kernel = np.load(out / "in_kernel_x4.npy")
    assert kernel.shape[0] == kernel.shape[1] and abs(kernel.sum() - 1) < 1e-9
    assert (out / "in_kernel_x4.png").is_file()
