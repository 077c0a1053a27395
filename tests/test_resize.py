"""MATLAB-style bicubic resize against an independent float64 NumPy re-derivation."""

import math

import numpy as np
import pytest
import skimage.data
import torch

from dynsr.ops import imresize
from dynsr.ops.resize import resize_weights


def _keys_cubic(x: float) -> float:
    a = abs(x)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _mirror(i: int, n: int) -> int:
    # MATLAB pads symmetrically: ..., 1, 0 | 0, 1, ..., n-1 | n-1, n-2, ...
    while i < 0 or i >= n:
        i = -i - 1 if i < 0 else 2 * n - 1 - i
    return i


def _matrix_1d(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Dense (n_out, n_in) resampling matrix, written out pixel by pixel."""
    m = np.zeros((n_out, n_in))
    width = 4.0 / scale if scale < 1 else 4.0
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + t for t in range(math.ceil(width) + 2)]
        if scale < 1:
            w = [scale * _keys_cubic(scale * (u - j)) for j in taps]
        else:
            w = [_keys_cubic(u - j) for j in taps]
        total = sum(w)
        for j, wj in zip(taps, w, strict=True):
            m[x - 1, _mirror(j - 1, n_in)] += wj / total
    return m


def matlab_imresize_reference(img: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, C) float64 -> resized, rows first (equal scales), as MATLAB does."""
    h, w = img.shape[:2]
    rows = _matrix_1d(h, math.ceil(h * scale), scale)
    cols = _matrix_1d(w, math.ceil(w * scale), scale)
    out = np.einsum("oh,hwc->owc", rows, img)
    return np.einsum("pw,owc->opc", cols, out)


def _photo(name: str, crop: int = 96) -> np.ndarray:
    img = getattr(skimage.data, name)().astype(np.float64) / 255.0
    if img.ndim == 2:
        img = img[..., None]
    return img[:crop, : crop + 13]  # non-square, odd width


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.6, 2, 3, 4, 1.5])
def test_matches_numpy_rederivation(name, scale):
    img = _photo(name)
    ref = matlab_imresize_reference(img, scale)
    x = torch.from_numpy(img).permute(2, 0, 1)
    out = imresize(x, scale).permute(1, 2, 0).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-6, rtol=0)


def test_float32_close_to_float64():
    img = torch.from_numpy(_photo("astronaut")).permute(2, 0, 1)
    a = imresize(img, 0.5)
    b = imresize(img.float(), 0.5)
    assert b.dtype == torch.float32
    assert (a - b.double()).abs().max() < 1e-6


def test_x2_antialias_taps_are_matlabs():
    # The interior taps of MATLAB's imresize(x, 0.5): the well-known 8-tap bicubic kernel.
    idx, w = resize_weights(64, 32, 0.5)
    expected = [-0.01171875, -0.03515625, 0.11328125, 0.43359375,
                0.43359375, 0.11328125, -0.03515625, -0.01171875]
    np.testing.assert_allclose(w[10].numpy(), expected, atol=1e-15)
    assert idx[10].tolist() == list(range(17, 25))


def test_batched_and_dimension_order():
    x = torch.rand(2, 3, 20, 30, dtype=torch.float64)
    y = imresize(x, 0.5)
    assert y.shape == (2, 3, 10, 15)
    assert torch.equal(y[1, 2], imresize(x[1, 2], 0.5))
    # Different scales per dimension: the smaller scale goes first, as MATLAB.
    z = imresize(x[0, 0], size=(40, 10))
    img = x[0, 0].numpy()
    rows = _matrix_1d(20, 40, 2.0)
    cols = _matrix_1d(30, 10, 1 / 3)
    ref = rows @ (img @ cols.T)
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-12)


def test_constant_and_sizes():
    x = torch.full((1, 7, 9), 0.3, dtype=torch.float64)
    for s in (0.5, 1 / 3, 2, 3, 0.7):
        y = imresize(x, s)
        assert y.shape[-2:] == (math.ceil(7 * s), math.ceil(9 * s))
        assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-14)


def test_differentiable():
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 0.5), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, 2), (x,))


def test_bad_arguments():
    with pytest.raises(TypeError):
        imresize(torch.zeros(4, 4, dtype=torch.uint8), 2)
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), 2, size=(8, 8))
    with pytest.raises(ValueError):
        imresize(torch.zeros(4, 4), -1)
