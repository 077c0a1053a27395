"""Y-channel PSNR/SSIM as the SR literature measures them."""

import math

import numpy as np
import pytest
import skimage.data
import torch
from skimage.metrics import structural_similarity

from dynsr.metrics import evaluate_pair, psnr, ssim, to_y
from dynsr.ops import imresize, quantize, rgb_to_ycbcr, ycbcr_to_rgb


def _tensor(img: np.ndarray) -> torch.Tensor:
    img = img.astype(np.float64) / 255.0
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def _bicubic_sr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    return imresize(quantize(imresize(hr, 1 / scale)), scale)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_ssim_matches_scikit_image(name):
    hr = _tensor(getattr(skimage.data, name)())
    hr = hr[:, : hr.shape[1] // 2 * 2, : hr.shape[2] // 2 * 2]
    sr = _bicubic_sr(hr, 2)
    y_sr, y_hr = to_y(sr), to_y(hr)
    ours = ssim(y_sr, y_hr)
    ref = structural_similarity(
        y_sr.numpy(), y_hr.numpy(), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )
    assert abs(ours - ref) < 1e-6
    assert 0.5 < ours < 1.0


def test_y_is_studio_range_bt601():
    rgb = torch.tensor([[[[0.0]], [[0.0]], [[0.0]]], [[[1.0]], [[1.0]], [[1.0]]]],
                       dtype=torch.float64)
    y = to_y(rgb[:, :, :, :])
    assert y[0].item() == pytest.approx(16.0)
    assert y[1].item() == pytest.approx(235.0)
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1)
    assert to_y(red).item() == pytest.approx(16 + 65.481)
    # Y is not rounded.
    grey = torch.full((3, 1, 1), 100 / 255, dtype=torch.float64)
    assert to_y(grey).item() == pytest.approx(16 + 219 * 100 / 255)


def test_grayscale_is_its_own_luma():
    g = torch.tensor([[[0.0, 1.0]]], dtype=torch.float64)
    assert to_y(g).tolist() == [[0.0, 255.0]]


def test_sr_rounded_to_uint8_before_measuring():
    hr = torch.full((3, 16, 16), 100 / 255, dtype=torch.float64)
    sr = hr + 0.4 / 255  # rounds back to the same 8-bit level
    assert evaluate_pair(sr, hr, crop_border=2)["psnr_y"] == math.inf


def test_psnr_by_hand_and_crop():
    a = torch.zeros(20, 20, dtype=torch.float64)
    b = torch.zeros(20, 20, dtype=torch.float64)
    b[5:15, 5:15] = 10.0  # MSE over the whole = 100*100/400 = 25
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25))
    hr = torch.zeros(1, 20, 20, dtype=torch.float64)
    sr = hr.clone()
    sr[0, :2, :] = 1.0  # only the 2-pixel border differs
    assert evaluate_pair(sr, hr, crop_border=2)["psnr_y"] == math.inf
    assert evaluate_pair(sr, hr, crop_border=1)["psnr_y"] < 20


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-12)


def test_psnr_matches_scikit_image_on_a_real_photo():
    from skimage.metrics import peak_signal_noise_ratio

    hr = _tensor(skimage.data.astronaut())
    sr = _bicubic_sr(hr, 2)
    r = evaluate_pair(sr, hr, crop_border=2)
    y_sr = np.floor(sr.numpy().clip(0, 1) * 255 + 0.5) / 255
    y_sr = 16 + 65.481 * y_sr[0] + 128.553 * y_sr[1] + 24.966 * y_sr[2]
    y_hr = 16 + 65.481 * hr[0].numpy() + 128.553 * hr[1].numpy() + 24.966 * hr[2].numpy()
    ref = peak_signal_noise_ratio(y_hr[2:-2, 2:-2], y_sr[2:-2, 2:-2], data_range=255)
    assert r["psnr_y"] == pytest.approx(ref, abs=1e-9)
    assert 25 < r["psnr_y"] < 40


def test_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_pair(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9), 2)
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.zeros(8, 8), torch.zeros(8, 8))
