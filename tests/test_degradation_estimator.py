"""The degradation estimator's data (BlindSampler), network and aggregation."""

from __future__ import annotations

from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image

from dynsr.degrade import (
    degrade,
    div2krk_kernel,
    isotropic_gaussian,
    kernel_code,
    udvd_kernel_from_direct,
)
from dynsr.degrade.samplers import BlindOptions, BlindSampler
from dynsr.models.degradation_estimator import (
    DegradationEstimator,
    _gaussian_smooth,
    estimator_loss,
)
from dynsr.train.datasets import HRFolderDataset
from dynsr.train.estimator import _EstimatorRun, load_estimator_config


def _hr(size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                             align_corners=False)[0]
    return (smooth + 0.1 * torch.rand(3, size, size, generator=gen)).clamp(0, 1)


def _sample(options: BlindOptions, scale: int, seed: int, patch: int = 48):
    sampler = BlindSampler(options)
    border = sampler.context(scale)
    hr = _hr(patch + 2 * border * scale, seed)
    return sampler, hr, border, sampler(hr, scale, border, torch.Generator().manual_seed(seed))


def test_blind_samples_are_a_function_of_the_seed():
    options = BlindOptions(spatially_variant=0.5)
    _, _, _, a = _sample(options, 2, 3)
    _, _, _, b = _sample(options, 2, 3)
    _, _, _, c = _sample(options, 2, 4)
    assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["dmap"], b["dmap"])
    assert not torch.equal(a["dmap"], c["dmap"])
    assert a["lr"].shape == (3, 24, 24) and a["dmap"].shape == (16, 24, 24)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_isotropic_target_is_the_code_of_the_blur_that_made_the_lr(scale):
    # Noise-free, invariant, isotropic only: the target code must be the code of the one
    # isotropic Gaussian whose degradation gives exactly this LR patch.
    options = BlindOptions(families=(1.0, 0.0, 0.0), spatially_variant=0.0, noise_zero=1.0,
                           as_file=0.0)
    sampler, hr, border, sample = _sample(options, scale, seed=7)
    code = sample["dmap"][:15, 0, 0].double()
    assert torch.equal(sample["dmap"][:, :1, :1].expand_as(sample["dmap"]), sample["dmap"])
    assert float(sample["dmap"][15].abs().max()) == 0.0
    widths = torch.linspace(0.2, 3.0, 28001, dtype=torch.float64)
    codes = kernel_code(isotropic_gaussian(15, widths, dtype=torch.float64))
    width = float(widths[(codes - code).norm(dim=1).argmin()])
    assert float((kernel_code(isotropic_gaussian(15, torch.tensor([width]),
                                                 dtype=torch.float64))[0] - code).norm()) < 1e-4
    lr = degrade(hr, scale, width=width, kernel_size=15)[..., border:-border, border:-border]
    assert float((lr - sample["lr"]).abs().max()) <= 1 / 255 + 1e-6


@pytest.mark.parametrize("scale", [2, 4])
def test_direct_kernel_targets_are_udvds_mapping(scale):
    # The sampler's fast path (a precomputed least-squares operator, with the non-negative
    # fallback) gives the code udvd_kernel_from_direct gives.
    sampler = BlindSampler(BlindOptions(families=(0.0, 0.0, 1.0)))
    for seed in range(3):
        kernel, code = sampler._kernel("direct", scale, torch.Generator().manual_seed(seed))
        again = div2krk_kernel(scale, torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert torch.allclose(kernel.double(), again, atol=1e-7)
        expected = kernel_code(udvd_kernel_from_direct(again, scale))
        # The operator takes the grid offset as exact; DIV2KRK's recentring leaves the centre
        # of mass within ~1e-4 pixel of it, which moves the code by a few 1e-6.
        assert torch.allclose(code, expected, atol=2e-5)


def test_x4_direct_kernels_map_to_non_negative_kernels():
    # DIV2KRK's x4 kernels are wider than the basis: the plain least-squares k_u rings (taps
    # down to -1 to -4 times its peak); the fallback gives a blur kernel (the projection on
    # the 15 components leaves ripples of about a tenth of the peak).
    for kernel in div2krk_kernel(4, torch.Generator().manual_seed(0), batch=2,
                                 dtype=torch.float64):
        told = udvd_kernel_from_direct(kernel, 4)
        assert float(told.min()) > -0.2 * float(told.max())
        # Normalised before the projection, which keeps 85-90 % of such a wide kernel's mass.
        assert 0.8 < float(told.sum()) <= 1.0


def test_noise_fields_and_blends_vary_across_the_patch_and_stay_in_range():
    options = BlindOptions(spatially_variant=1.0, noise_zero=0.0, noise_low=0.0)
    varied = 0
    for seed in range(6):
        _, _, _, sample = _sample(options, 2, seed, patch=64)
        sigma = sample["dmap"][15] * 255
        assert 0 <= float(sigma.min()) and float(sigma.max()) <= 75 + 1e-4
        varied += float(sigma.max() - sigma.min()) > 1.0
        varied += float((sample["dmap"][:15] - sample["dmap"][:15, :1, :1]).abs().max()) > 1e-3
    assert varied >= 8


def test_measured_noise_follows_the_target_sigma():
    # Flat HR: the LR's spread around its local mean is the AWGN alone.
    options = BlindOptions(families=(1.0, 0.0, 0.0), spatially_variant=0.0, noise_zero=0.0,
                           noise_low=0.0, noise_range=(30.0, 30.0), as_file=0.0)
    sampler = BlindSampler(options)
    border = sampler.context(2)
    hr = torch.full((3, 128 + 4 * border, 128 + 4 * border), 0.5)
    sample = sampler(hr, 2, border, torch.Generator().manual_seed(0))
    assert float(sample["dmap"][15, 0, 0]) * 255 == pytest.approx(30.0)
    assert float((sample["lr"] - 0.5).std()) * 255 == pytest.approx(30.0, rel=0.05)


def test_blind_options_reject_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown key"):
        BlindOptions.from_mapping({"widths": [1, 2]}, "opts")
    with pytest.raises(ValueError, match="non-negative"):
        BlindOptions.from_mapping({"spatially_variant": -1}, "opts")
    with pytest.raises(ValueError, match="sum to 0"):
        BlindOptions.from_mapping({"families": [0, 0, 0]}, "opts")


@pytest.mark.parametrize("size", [(16, 16), (37, 50), (61, 19)])
def test_estimator_keeps_the_lr_grid_for_any_size(size):
    model = DegradationEstimator(2, channels=8, num_blocks=1).eval()
    out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 18, *size) and bool(torch.isfinite(out).all())
    gray = model(torch.rand(1, 1, *size))
    assert gray.shape == (1, 18, *size)


def test_whole_image_estimate_is_constant_and_tiny_images_are_refused():
    model = DegradationEstimator(2, channels=8, num_blocks=1).eval()
    estimate = model.estimate(torch.rand(1, 3, 40, 44), smoothing=None)
    assert estimate.dmap.shape == (1, 16, 40, 44)
    assert torch.equal(estimate.dmap, estimate.dmap[:, :, :1, :1].expand_as(estimate.dmap))
    assert float(estimate.noise.min()) >= 0
    assert estimate.kernel_at().shape == (1, 15, 15)
    local = model.estimate(torch.rand(1, 3, 40, 44), smoothing=4.0)
    assert float(local.dmap[:, :15].std(dim=(-2, -1)).max()) > 0
    with pytest.raises(ValueError, match="too small"):
        model.estimate(torch.rand(1, 3, 15, 40))


def test_normalised_smoothing_keeps_a_constant_field_whatever_the_weights():
    weights = torch.rand(1, 1, 30, 40) + 0.01
    field = torch.full((1, 1, 30, 40), 0.37)
    smoothed = _gaussian_smooth(weights * field, 5.0) / _gaussian_smooth(weights, 5.0)
    assert torch.allclose(smoothed, field, atol=1e-6)


def test_a_few_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    options = BlindOptions(spatially_variant=0.0)
    samples = [_sample(options, 2, seed, patch=64)[3] for seed in range(4)]
    lr = torch.stack([s["lr"] for s in samples])
    dmap = torch.stack([s["dmap"] for s in samples])
    model = DegradationEstimator(2, channels=16, num_blocks=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(80):
        loss, parts = estimator_loss(model, model(lr), dmap)
        first = parts if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert parts["code_l1"] < 0.5 * first["code_l1"]
    assert parts["sigma_l1"] < 0.6 * first["sigma_l1"]


ESTIMATOR_RECIPES = sorted((Path(__file__).resolve().parent.parent / "configs" / "estimator")
                           .glob("*.yaml"))


def test_estimator_recipes_load_and_build_their_data(tmp_path):
    assert [p.stem for p in ESTIMATOR_RECIPES] == ["x2_cpu", "x3_cpu", "x4_cpu"]
    Image.fromarray(skimage.data.astronaut()[:300, :300]).save(tmp_path / "a.png")
    for path in ESTIMATOR_RECIPES:
        assert path.read_text().startswith("# "), path.name
        cfg = load_estimator_config(path, [f"data.paths=[{tmp_path / 'a.png'}]"])
        assert cfg["name"] == f"estimator_{path.stem.replace('_cpu', '')}_cpu"
        assert str(cfg["val"]["hr"]).endswith("Set5/HR")  # resolved against the file
        if cfg["model"]["init"] is not None:
            assert cfg["model"]["init"].endswith("degradation-estimator_x2.safetensors")
        architecture = {k: v for k, v in cfg["model"].items() if k != "init"}
        DegradationEstimator(cfg["scale"], **architecture)
        data = HRFolderDataset([tmp_path / "a.png"], scale=cfg["scale"], seed=0,
                               patch_size=cfg["data"]["patch_size"], augment=False, cache=True,
                               degradation="blind",
                               degradation_options=cfg["data"]["degradation_options"])
        sample = data.sample(0)
        lr_side = cfg["data"]["patch_size"] // cfg["scale"]
        assert sample["dmap"].shape == (16, lr_side, lr_side)


def test_a_resumed_estimator_run_keeps_its_best_weights(tmp_path):
    # Only state.pt travels between machines; best.safetensors must come back with it.
    Image.fromarray(skimage.data.astronaut()[:300, :300]).save(tmp_path / "a.png")
    cfg = load_estimator_config(ESTIMATOR_RECIPES[0], [f"data.paths=[{tmp_path / 'a.png'}]"])
    data = HRFolderDataset([tmp_path / "a.png"], scale=cfg["scale"], seed=0, patch_size=96,
                           augment=False, cache=True, degradation="blind",
                           degradation_options=cfg["data"]["degradation_options"])
    out = tmp_path / "run"
    out.mkdir()
    run = _EstimatorRun(cfg, out, resume=False)
    run.validate([data.sample(0)], iteration=10)
    run.save_state(10)
    written = (out / "best.safetensors").read_bytes()
    (out / "best.safetensors").unlink()
    resumed = _EstimatorRun(cfg, out, resume=True)
    assert resumed.start == 10 and (out / "best.safetensors").read_bytes() == written


def test_the_estimator_is_registered_but_not_an_upscaler(capsys):
    from dynsr import load
    from dynsr.cli.main import main
    from dynsr.models import available, create, get_spec

    assert get_spec("degradation-estimator").task == "estimate-degradation"
    assert "degradation-estimator" not in [s.name for s in available()]
    assert "degradation-estimator" in [s.name for s in available(task=None)]
    assert isinstance(create("degradation-estimator", scale=2), DegradationEstimator)
    with pytest.raises(ValueError, match="does not upscale"):
        load("degradation-estimator", 2)
    assert main(["upscale", "x.png", "--model", "degradation-estimator"]) != 0
    assert "does not upscale" in capsys.readouterr().err
