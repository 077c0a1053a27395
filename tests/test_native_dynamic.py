"""The native one-pass tap loops (dynsr/native) against the unfold references and the torch
tap loop: every layout, stride, thread split and gradient, and the fallback without them."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_ops_dynamic import ref_filter, ref_upsample

from dynsr import native
from dynsr.ops import dynamic as dyn
from dynsr.ops.dynamic import dynamic_filter, dynamic_upsample

CL = torch.channels_last


@pytest.fixture
def library() -> native.DynamicTaps:
    lib = native.dynamic_taps()
    if shutil.which("cc") or shutil.which("gcc"):
        # A machine with a C compiler must get the native path: a silent fallback would leave
        # these tests comparing the torch loop with itself.
        assert lib is not None
    if lib is None:
        pytest.fail("no C compiler: the native tap loops cannot be built here")
    return lib


def _pair(shape_x, kernel_channels, seed=0, x_fmt=torch.contiguous_format,
          k_fmt=torch.contiguous_format):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape_x
    x = torch.randn(b, c, h, w, generator=g).contiguous(memory_format=x_fmt)
    kernels = torch.randn(b, kernel_channels, h, w, generator=g).contiguous(memory_format=k_fmt)
    return x, kernels


def _forward_backward(fn, x, kernels, *args, seed=7):
    x = x.detach().clone().requires_grad_()
    kernels = kernels.detach().clone().requires_grad_()
    y = fn(x, kernels, *args)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    y.backward(gy)
    return y.detach(), x.grad, kernels.grad


def _both_paths(monkeypatch, fn, x, kernels, *args):
    ours = _forward_backward(fn, x, kernels, *args)
    monkeypatch.setenv("DYNSR_NATIVE", "0")
    loop = _forward_backward(fn, x, kernels, *args)
    monkeypatch.setenv("DYNSR_NATIVE", "1")
    return ours, loop


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    ("shape", "k", "per_channel"),
    [((3, 3, 9, 21), 3, False),   # 27 rows: thread splits fall inside the second image
     ((1, 3, 40, 70), 7, False),  # k = 7, W not a multiple of the vector width
     ((2, 4, 9, 5), 5, True),     # per-channel kernels, W < k
     ((1, 1, 6, 40), 7, False),   # one channel, H < k
     ((2, 5, 12, 37), 3, False),  # five channels: a group of four and one
     ((1, 3, 3, 2), 5, False),    # tiny
     ((1, 2, 5, 1), 3, True),     # one column
     ((2, 4, 7, 19), 3, False),   # four channels sharing kernels
     ((1, 2, 6, 35), 5, False)],  # two channels sharing kernels
)
def test_filter_matches_reference_and_torch_loop(monkeypatch, library, threads, shape, k,
                                                 per_channel) -> None:
    torch.set_num_threads(threads)
    try:
        c = shape[1]
        x, kernels = _pair(shape, (c if per_channel else 1) * k * k)
        ours, loop = _both_paths(monkeypatch, dynamic_filter, x, kernels, k)
        expect = ref_filter(x.double(), kernels.double(), k)
        assert torch.allclose(ours[0].double(), expect, atol=1e-4)
        for a, b in zip(ours, loop, strict=True):
            assert a.shape == b.shape and a.stride() == b.stride()
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)
    finally:
        torch.set_num_threads(2)


@pytest.mark.parametrize("width", [320, 300])
def test_large_kernel_gradient_streamed_past_the_caches(monkeypatch, library, width) -> None:
    # Kernel gradients above 16 MB are written with streaming stores where a row starts on a
    # cache line: 320 columns put every row there, 300 only every fourth.
    x, kernels = _pair((1, 3, 288, width), 49, seed=3)
    assert kernels.numel() * 4 > 16 << 20
    ours, loop = _both_paths(monkeypatch, dynamic_filter, x, kernels, 7)
    for a, b in zip(ours, loop, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(("r", "k", "shape"),
                         [(2, 5, (2, 3, 11, 13)), (3, 3, (1, 3, 20, 9)), (4, 5, (1, 2, 7, 33))])
def test_upsample_matches_reference_and_torch_loop(monkeypatch, library, r, k, shape) -> None:
    x, kernels = _pair(shape, k * k * r * r)
    ours, loop = _both_paths(monkeypatch, dynamic_upsample, x, kernels, r)
    expect = ref_upsample(x.double(), kernels.double(), k, r)
    assert torch.allclose(ours[0].double(), expect, atol=1e-4)
    for a, b in zip(ours, loop, strict=True):
        assert a.shape == b.shape and a.stride() == b.stride()
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("x_fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("k_fmt", [torch.contiguous_format, CL])
@pytest.mark.parametrize("op", ["filter", "upsample"])
def test_memory_formats_in_place(monkeypatch, library, x_fmt, k_fmt, op) -> None:
    # channels_last tensors are read and written through their strides: outputs and
    # gradients come back in the layouts the torch loop gives.
    if op == "filter":
        x, kernels = _pair((2, 3, 10, 19), 25, x_fmt=x_fmt, k_fmt=k_fmt)
        args, fn = (5,), dynamic_filter
    else:
        x, kernels = _pair((2, 3, 10, 19), 9 * 4, x_fmt=x_fmt, k_fmt=k_fmt)
        args, fn = (2,), dynamic_upsample
    ours, loop = _both_paths(monkeypatch, fn, x, kernels, *args)
    assert ours[0].is_contiguous(memory_format=x_fmt)
    assert ours[2].is_contiguous(memory_format=k_fmt)
    for a, b in zip(ours, loop, strict=True):
        assert a.stride() == b.stride()
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_strided_views_and_broadcast_gradient(monkeypatch, library) -> None:
    # Kernels as a channel slice of a larger tensor, x as a column-strided view, and an
    # output gradient with zero strides (from an expand): all read in place.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 60, 8, 12, generator=g)
    kernels = base[:, 5:14]
    x = torch.randn(1, 3, 8, 24, generator=g)[..., ::2]
    assert x.stride(-1) == 2

    def run():
        xx = x.detach().requires_grad_()
        kk = kernels.detach().requires_grad_()
        y = dynamic_filter(xx, kk)
        y.backward(torch.ones(1, 1, 1, 1).expand_as(y))
        return y.detach(), xx.grad, kk.grad

    ours = run()
    monkeypatch.setenv("DYNSR_NATIVE", "0")
    loop = run()
    for a, b in zip(ours, loop, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_only_needed_gradients_native(library) -> None:
    x, kernels = _pair((1, 3, 9, 9), 9)
    kernels.requires_grad_()
    dynamic_filter(x, kernels).sum().backward()
    assert x.grad is None and kernels.grad is not None
    x2 = x.clone().requires_grad_()
    dynamic_filter(x2, kernels.detach()).sum().backward()
    assert x2.grad is not None


def test_other_dtypes_take_the_torch_loop(library) -> None:
    x, kernels = _pair((1, 3, 6, 7), 9)
    assert dyn._native(x, kernels) is library
    assert dyn._native(x.double(), kernels.double()) is None
    assert dyn._native(x.bfloat16(), kernels) is None
    y = dynamic_filter(x.double(), kernels.double())
    assert y.dtype == torch.float64
    assert torch.allclose(y, ref_filter(x.double(), kernels.double(), 3), atol=1e-12)


def test_disabled_and_no_compiler_fall_back(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setenv("DYNSR_NATIVE", "0")
    assert native.dynamic_taps() is None
    monkeypatch.setenv("DYNSR_NATIVE", "1")
    # A compiler that fails: one line on stderr, no library, the torch loop still answers.
    monkeypatch.setenv("DYNSR_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    native._load.cache_clear()
    try:
        assert native._load(("-O1", "-shared", "-fPIC")) is None
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "native dynamic kernels unavailable" in err
        assert not any(tmp_path.rglob("*.so"))  # nothing half-written left in the cache
    finally:
        native._load.cache_clear()


def test_build_is_cached_per_flags(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DYNSR_CACHE", str(tmp_path))
    native._load.cache_clear()
    try:
        first = native._load(("-O1", "-fPIC", "-shared", "-pthread"))
        assert first is not None and first.path.parent == tmp_path / "native"
        native._load.cache_clear()
        again = native._load(("-O1", "-fPIC", "-shared", "-pthread"))
        assert again.path == first.path  # found in the cache, not rebuilt under a new name
        other = native._load(("-O2", "-fPIC", "-shared", "-pthread"))
        assert other.path != first.path
        x, kernels = _pair((1, 3, 5, 9), 9)
        y = torch.empty_like(x)
        status = other.forward(x.data_ptr(), dyn._strides(x), kernels.data_ptr(),
                               dyn._strides(kernels), y.data_ptr(), dyn._strides(y),
                               1, 3, 5, 9, 3, 1, 1, 1)
        assert status == 0
        assert torch.allclose(y, ref_filter(x, kernels, 3), atol=1e-5)
    finally:
        native._load.cache_clear()


def test_other_version_builds_as_dynsr_builds_its_own(library) -> None:
    # The A/B benchmark's base version: the same source gives the very library dynsr loads.
    assert native.build_version(native._SOURCE).path == library.path


def test_capped_instruction_set_flags(monkeypatch) -> None:
    monkeypatch.setattr(native.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert native._march_flags() == ["-march=x86-64-v3"]
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert native._march_flags() == ["-march=x86-64"]
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert native._march_flags() == ["-march=native"]


def test_dispatch_modes_see_the_torch_loop(library) -> None:
    # FLOP counting (and fake tensors) must see the multiply-adds, which a C call hides.
    from torch.utils.flop_counter import FlopCounterMode

    x, kernels = _pair((1, 3, 8, 8), 9)
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten.addcmul_: lambda *a, out_shape=None, **k: 2,
        torch.ops.aten.mul: lambda *a, out_shape=None, **k: 1})
    with counter:
        assert dyn._native(x, kernels) is None
        dynamic_filter(x, kernels)
    assert counter.get_total_flops() > 0
