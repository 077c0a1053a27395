"""The one-pass sub-pixel output stage (dynsr.ops.subpixel) against pixel-shuffle references,
native and torch paths alike."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from dynsr import native
from dynsr.ops import shuffle_gated_residual


def _reference(cells: torch.Tensor, gate: torch.Tensor, image: torch.Tensor,
               scale: int) -> torch.Tensor:
    """The same sum with pixel shuffles: cells (R, Q, m²C) as (1, m²C, R, Q) channels in
    (i, j, c) order, shuffled by m = u·s, plus the image upscaled by s (nearest)."""
    rows, cols, values = cells.shape
    colours = image.shape[2]
    m = round((values / colours) ** 0.5)
    # Pixel-shuffle wants colour-major channels: (c, i, j).
    planes = cells.reshape(rows, cols, m, m, colours).permute(4, 2, 3, 0, 1)
    shuffled = F.pixel_shuffle(planes.reshape(1, colours * m * m, rows, cols), m)[0]
    gated = shuffled * gate.repeat_interleave(m, 0).repeat_interleave(m, 1)
    nearest = image.permute(2, 0, 1).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return (nearest + gated).permute(1, 2, 0)


def _inputs(rows: int, cols: int, side: int, scale: int, colours: int = 3):
    g = torch.Generator().manual_seed(rows * 100 + cols)
    m = side * scale
    # Past [0, 1] on both sides, so that the sample rounding clamps.
    cells = torch.rand(rows, cols, m * m * colours, generator=g) * 1.6 - 0.8
    gate = torch.rand(rows, cols, generator=g)
    image = torch.rand(side * rows, side * cols, colours, generator=g)
    return cells, gate, image


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch) -> str:
    if request.param == "torch":
        monkeypatch.setenv("DYNSR_NATIVE", "0")
    elif shutil.which("cc") or shutil.which("gcc"):
        # With a compiler the native loop must load: a silent fallback would compare the
        # torch path with itself.
        assert native.shuffle_residual() is not None
    return request.param


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(3, 5), (1, 1), (7, 2)])
def test_float_result_is_the_pixel_shuffled_sum(path, scale, size):
    cells, gate, image = _inputs(*size, side=2, scale=scale)
    out = shuffle_gated_residual(cells, gate, image, scale)
    assert out.shape == (2 * scale * size[0], 2 * scale * size[1], 3) and out.is_contiguous()
    torch.testing.assert_close(out, _reference(cells, gate, image, scale), rtol=0, atol=1e-6)


@pytest.mark.parametrize("out_dtype", [torch.uint8, torch.uint16])
def test_samples_round_the_float_result_as_files_are_written(path, out_dtype):
    cells, gate, image = _inputs(6, 9, side=2, scale=2)
    maxval = 255 if out_dtype == torch.uint8 else 65535
    total = shuffle_gated_residual(cells, gate, image, 2)
    samples = shuffle_gated_residual(cells, gate, image, 2, out_dtype=out_dtype)
    assert samples.dtype == out_dtype
    expected = torch.floor(total.clamp(0, 1) * maxval + 0.5)
    assert torch.equal(samples.to(torch.float32), expected)
    assert expected.min() == 0 and expected.max() == maxval  # both clamps were reached


def test_native_and_torch_paths_agree_to_the_bit(monkeypatch):
    if shutil.which("cc") or shutil.which("gcc"):
        assert native.shuffle_residual() is not None
    # Strided views as the model passes them: cells channels-last features, a
    # channels-last image seen as (H, W, C), a gate with a row stride.
    features = torch.rand(1, 48, 5, 7).contiguous(memory_format=torch.channels_last)
    cells = features.permute(0, 2, 3, 1)[0]
    gate = torch.rand(5, 9)[:, 1:8]
    image = torch.rand(1, 3, 10, 14).contiguous(memory_format=torch.channels_last)
    image = image[0].permute(1, 2, 0)
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("DYNSR_NATIVE", flag)
        results[flag] = [shuffle_gated_residual(cells, gate, image, 2, out_dtype=dtype)
                         for dtype in (torch.float32, torch.uint8, torch.uint16)]
    for native_out, torch_out in zip(results["1"], results["0"], strict=True):
        assert torch.equal(native_out, torch_out)


def test_grey_and_other_cell_sides(path):
    cells, gate, image = _inputs(4, 3, side=3, scale=2, colours=1)
    out = shuffle_gated_residual(cells, gate, image, 2)
    torch.testing.assert_close(out, _reference(cells, gate, image, 2), rtol=0, atol=1e-6)


def test_shapes_that_do_not_fit_are_refused():
    cells, gate, image = _inputs(3, 4, side=2, scale=2)
    with pytest.raises(ValueError, match="do not fit scale 3"):
        shuffle_gated_residual(cells, gate, image, 3)
    with pytest.raises(ValueError, match="do not fit"):
        shuffle_gated_residual(cells, gate[:, :3], image, 2)
    with pytest.raises(ValueError, match="out_dtype"):
        shuffle_gated_residual(cells, gate, image, 2, out_dtype=torch.int16)
