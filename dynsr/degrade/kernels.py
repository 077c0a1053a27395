"""Blur kernels for synthetic degradations: Gaussians, DIV2KRK-style random kernels, files.

Conventions (shared by every function here)
-------------------------------------------
* A kernel is a (k, k) tensor ``K[u, v]``, u the row (downwards), v the column (rightwards),
  normalised to sum 1. Batched kernels are (..., k, k).
* Grid: tap (u, v) sits at ``y = u - (k-1)/2``, ``x = v - (k-1)/2``, i.e. the kernel is
  centred at the middle pixel for odd k. For even k the centre ``(k-1)/2`` falls between the
  four middle taps (as SRMD's ``center = size/2 + 0.5`` in 1-based MATLAB indexing), so an
  even kernel is not centred on any pixel and shifts an image by half a pixel.
* Anisotropic Gaussian (SRMD / KAIR ``anisotropic_Gaussian`` convention): covariance
  ``Sigma = R(theta) diag(lambda1, lambda2) R(theta)^T`` in (x, y) = (column, row) coordinates,
  with ``R(theta) = [[cos, -sin], [sin, cos]]``. lambda1 and lambda2 are *variances* along the
  principal axes; the lambda1 axis points along ``(cos theta, sin theta)`` in (x, y), so
  theta = 0 stretches the kernel horizontally and theta = pi/2 vertically (the transpose).
  With lambda1 = lambda2 = sigma**2 it equals the isotropic Gaussian of width sigma.
* Randomness always comes from an explicit ``torch.Generator`` (or an int seed); the global
  RNG is never used, so one seed gives the same kernels on every run.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "GeneratorLike",
    "analytic_x4_kernel",
    "anisotropic_gaussian",
    "center_of_mass",
    "div2krk_kernel",
    "isotropic_gaussian",
    "load_kernel",
    "make_generator",
    "pad_kernel",
    "random_anisotropic_kernel",
    "recentre_kernel",
    "sample_anisotropic_params",
    "save_kernel",
]

GeneratorLike = torch.Generator | int | None

# SRMD's sampling distribution of anisotropic kernels (its Demo_Get_PCA_matrix.m and
# degradation_model.m; METHODS.md): theta ~ U[0, pi], lambda1 ~ U[0.1, 10],
# lambda2 ~ U[0.1, lambda1].
SRMD_LAMBDA_RANGE = (0.1, 10.0)

# DIV2KRK (KernelGAN, Bell-Kligler et al., NeurIPS 2019, Sec. 5): 11x11 anisotropic Gaussians,
# lambda1, lambda2 ~ U[0.6, 5] independently, random angle, uniform multiplicative noise of up
# to 25 % per tap, normalised to sum 1.
DIV2KRK_SIZE = 11
DIV2KRK_LAMBDA_RANGE = (0.6, 5.0)
DIV2KRK_NOISE_LEVEL = 0.25


def make_generator(generator: GeneratorLike = None, device: torch.device | str = "cpu"):
    """A ``torch.Generator`` from a generator, an int seed, or None (fresh, OS-seeded).

    None gives a generator seeded from the OS, not the global RNG and not torch's fixed
    default seed, so unseeded calls differ between runs without touching global state.
    """
    if isinstance(generator, torch.Generator):
        return generator
    gen = torch.Generator(device=device)
    if generator is None:
        gen.seed()
    elif isinstance(generator, int) and not isinstance(generator, bool):
        gen.manual_seed(generator)
    else:
        raise TypeError(f"expected a torch.Generator, an int seed or None, got {generator!r}")
    return gen


def _grid(size: int, dtype: torch.dtype, device,
          centre_offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (y) and column (x) offsets from the kernel centre (k-1)/2 + centre_offset, each
    (k, k)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"kernel size must be a positive int, got {size!r}")
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2 - centre_offset
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    return y, x


_MATLAB_EPS = 2.220446049250313e-16  # MATLAB's eps (float64 machine epsilon)


def _as_param(value: float | torch.Tensor, dtype: torch.dtype, device) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype, device=device)


def _normalised_exp(neg_half_quadratic: torch.Tensor) -> torch.Tensor:
    """exp of (..., k, k) log-weights normalised over the last two dims.

    Subtracting the per-kernel maximum first keeps zero-width kernels finite: they become a
    delta (odd k) or the four middle taps (even k) instead of 0/0. Taps below eps (double
    precision, relative to the peak) are zeroed as MATLAB's ``fspecial`` does; this also keeps
    subnormal float32 values, which make per-pixel filtering ~100x slower, out of kernels.
    """
    peak = neg_half_quadratic.amax(dim=(-2, -1), keepdim=True)
    weights = torch.exp(neg_half_quadratic - peak)
    weights = weights.masked_fill(weights < _MATLAB_EPS, 0.0)
    return weights / weights.sum(dim=(-2, -1), keepdim=True)


def isotropic_gaussian(
    size: int,
    sigma: float | torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Isotropic Gaussian kernel(s) of standard deviation ``sigma`` ("kernel width").

    ``sigma`` is a number (returns (k, k)) or a tensor of any shape S (returns S + (k, k)),
    so a (B,) tensor of widths gives a (B, k, k) batch in one op. sigma = 0 gives a delta.
    Same values as MATLAB's ``fspecial('gaussian', k, sigma)`` (taps below eps · max zeroed).
    """
    if isinstance(sigma, torch.Tensor) and device is None:
        device = sigma.device
    sigma_t = _as_param(sigma, dtype, device)
    if bool((sigma_t < 0).any()):
        raise ValueError("sigma must be non-negative")
    y, x = _grid(size, dtype, device)
    variance = (sigma_t * sigma_t).clamp_min(torch.finfo(dtype).tiny)[..., None, None]
    return _normalised_exp(-(x * x + y * y) / (2 * variance))


def anisotropic_gaussian(
    size: int,
    lambda1: float | torch.Tensor,
    lambda2: float | torch.Tensor,
    theta: float | torch.Tensor,
    *,
    centre_offset: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Anisotropic Gaussian kernel(s), SRMD/KAIR convention (see the module docstring).

    ``lambda1``, ``lambda2``: variances along the principal axes; ``theta``: angle of the
    lambda1 axis from the x (column) axis, in radians. Numbers give (k, k); tensors broadcast
    against each other and give broadcast_shape + (k, k). ``centre_offset``: the Gaussian's
    centre in pixels down and right of the middle tap (0.5 for DIV2KRK's x2 grid).
    """
    for value in (lambda1, lambda2, theta):
        if isinstance(value, torch.Tensor) and device is None:
            device = value.device
    l1 = _as_param(lambda1, dtype, device)
    l2 = _as_param(lambda2, dtype, device)
    th = _as_param(theta, dtype, device)
    if bool((l1 < 0).any()) or bool((l2 < 0).any()):
        raise ValueError("lambda1 and lambda2 (variances) must be non-negative")
    y, x = _grid(size, dtype, device, centre_offset)
    cos, sin = torch.cos(th)[..., None, None], torch.sin(th)[..., None, None]
    # Coordinates in the principal frame, R(theta)^T (x, y): Sigma^-1 is diagonal there.
    along = x * cos + y * sin
    across = -x * sin + y * cos
    tiny = torch.finfo(dtype).tiny
    quadratic = along * along / l1.clamp_min(tiny)[..., None, None]
    quadratic = quadratic + across * across / l2.clamp_min(tiny)[..., None, None]
    return _normalised_exp(-0.5 * quadratic)


def isotropic_gaussian_field(width: torch.Tensor, size: int) -> torch.Tensor:
    """Per-pixel isotropic Gaussians (B, k*k, H, W), taps row-major, one for each pixel of a
    width map (B, 1, H, W), in the map's dtype.

    The kernels of ``isotropic_gaussian(size, width)``, built as outer products of
    normalised 1-D Gaussians (a normalised isotropic Gaussian factorises exactly): 10x faster
    than evaluating k*k exponentials per pixel. Width 0 is a delta. Taps under 1e-15 are 0:
    the far tails of narrow kernels are subnormal floats (exp(-112) at width 0.2), on which
    CPU arithmetic is ~100x slower, and they weigh nothing.
    """
    if width.dim() != 4 or width.shape[1] != 1:
        raise ValueError(f"width map must be (B, 1, H, W), got shape {tuple(width.shape)}")
    offsets = torch.arange(size, dtype=width.dtype, device=width.device) - (size - 1) / 2
    variance = (width[:, 0] ** 2).clamp_min(1e-12)  # (B, H, W); width 0: a delta, not 0/0
    taps = torch.exp(-offsets[None, :, None, None] ** 2 / (2 * variance[:, None]))  # (B,k,H,W)
    taps = taps / taps.sum(1, keepdim=True)
    taps = torch.where(taps < 1e-15, 0.0, taps)
    field = taps[:, :, None] * taps[:, None, :]  # (B, k, k, H, W)
    return field.reshape(width.shape[0], size * size, *width.shape[-2:])


def sample_anisotropic_params(
    num: int,
    generator: GeneratorLike = None,
    *,
    lambda_range: tuple[float, float] = SRMD_LAMBDA_RANGE,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SRMD's kernel distribution: ``(lambda1, lambda2, theta)``, each (num,).

    theta ~ U[0, pi], lambda1 ~ U[lo, hi], lambda2 ~ U[lo, lambda1] (so lambda2 <= lambda1).
    Draw order is fixed (theta, lambda1, lambda2), so a seed pins every value.
    """
    gen = make_generator(generator)
    lo, hi = lambda_range
    if not 0 <= lo <= hi:
        raise ValueError(f"lambda_range must satisfy 0 <= low <= high, got {lambda_range}")
    theta = torch.rand(num, generator=gen, dtype=dtype) * math.pi
    lambda1 = lo + (hi - lo) * torch.rand(num, generator=gen, dtype=dtype)
    lambda2 = lo + (lambda1 - lo) * torch.rand(num, generator=gen, dtype=dtype)
    return lambda1, lambda2, theta


def random_anisotropic_kernel(
    size: int = 15,
    generator: GeneratorLike = None,
    *,
    batch: int | None = None,
    lambda_range: tuple[float, float] = SRMD_LAMBDA_RANGE,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random anisotropic Gaussian(s) from SRMD's distribution (the PCA basis's distribution).

    Returns (k, k), or (batch, k, k) when ``batch`` is given.
    """
    l1, l2, theta = sample_anisotropic_params(1 if batch is None else batch, generator,
                                              lambda_range=lambda_range)
    kernels = anisotropic_gaussian(size, l1, l2, theta, dtype=torch.float64).to(dtype)
    return kernels[0] if batch is None else kernels


def center_of_mass(kernel: torch.Tensor) -> torch.Tensor:
    """Centre of mass (row, column) of (..., k, k) kernels in tap coordinates, shape (..., 2)."""
    rows = torch.arange(kernel.shape[-2], dtype=kernel.dtype, device=kernel.device)
    cols = torch.arange(kernel.shape[-1], dtype=kernel.dtype, device=kernel.device)
    total = kernel.sum(dim=(-2, -1))
    row = (kernel.sum(dim=-1) * rows).sum(dim=-1) / total
    col = (kernel.sum(dim=-2) * cols).sum(dim=-1) / total
    return torch.stack([row, col], dim=-1)


def recentre_kernel(kernels: torch.Tensor, offset: float = 0.0, passes: int = 3) -> torch.Tensor:
    """Shift (B, k, k) kernels by a sub-pixel amount so that their centre of mass lies
    ``offset`` pixels down and right of the middle tap; renormalised to sum 1.

    Bilinear interpolation (zero outside) keeps the taps non-negative; KernelGAN's generator
    re-centres with a spline shift instead, which can create small negative taps. Mass
    shifted past the border is lost, so one pass leaves a residual of a few thousandths of a
    pixel on wide kernels; three passes bring it to about 1e-4 pixel.
    """
    for _ in range(passes):
        kernels = _shift_centre_to(kernels, offset)
    return kernels


def _shift_centre_to(kernels: torch.Tensor, offset: float) -> torch.Tensor:
    size = kernels.shape[-1]
    wanted = (size - 1) / 2 + offset
    shift = center_of_mass(kernels) - wanted  # (B, 2) as (row, col)
    offsets = torch.arange(size, dtype=kernels.dtype, device=kernels.device)
    # Output tap i reads input position i + shift; grid_sample wants (x, y) in [-1, 1].
    rows = offsets[None, :, None] + shift[:, 0, None, None]
    cols = offsets[None, None, :] + shift[:, 1, None, None]
    rows, cols = torch.broadcast_tensors(rows, cols)
    grid = torch.stack([cols, rows], dim=-1) * (2.0 / (size - 1)) - 1.0
    shifted = F.grid_sample(kernels[:, None], grid, mode="bilinear", padding_mode="zeros",
                            align_corners=True)[:, 0]
    return shifted / shifted.sum(dim=(-2, -1), keepdim=True)


def analytic_x4_kernel(kernel_x2: torch.Tensor) -> torch.Tensor:
    """The single x4 kernel equal to two x2 steps (blur + take every 2nd pixel) with ``kernel_x2``.

    ``K4[2r + a, 2c + b] += k[r, c] * k[a, b]``: k convolved with k dilated by 2, size
    3k - 2 (31 for 11, 37 for 13). This is KernelGAN's ``analytic_kernel`` without its final
    crop of k//2 taps per side; DIV2KRK's ``gt_k_x4`` kernels are the full 31x31 ones.
    Blurring with it and subsampling by 4 equals the two x2 steps exactly (away from the
    borders) when both use offset 0. Accepts (k, k) or (B, k, k).
    """
    single = kernel_x2.dim() == 2
    k = kernel_x2[None] if single else kernel_x2
    batch, size = k.shape[0], k.shape[-1]
    # conv_transpose with stride 2 scatters weight k[a, b] at 2r + a: exactly the sum above.
    big = F.conv_transpose2d(k[None], k[:, None], stride=2, groups=batch)[0]
    big = big / big.sum(dim=(-2, -1), keepdim=True)
    assert big.shape[-1] == 3 * size - 2
    return big[0] if single else big


def div2krk_kernel(
    scale: int,
    generator: GeneratorLike = None,
    *,
    batch: int | None = None,
    noise_level: float = DIV2KRK_NOISE_LEVEL,
    lambda_range: tuple[float, float] = DIV2KRK_LAMBDA_RANGE,
    grid: Literal["bicubic", "middle"] = "bicubic",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Random DIV2KRK-style test kernel(s): 11x11 for x2, 31x31 for x4.

    What KernelGAN did (facts and where they come from):

    * Paper (Bell-Kligler, Shocher, Irani, "Blind Super-Resolution Kernel Estimation using an
      Internal-GAN", NeurIPS 2019, Sec. 5; restated by the author in sefibk/KernelGAN issue
      #59): 11x11 anisotropic Gaussians with lambda1, lambda2 ~ U(0.6, 5) drawn independently,
      a random rotation, uniform multiplicative noise of up to 25 % of each tap, normalised
      to sum 1.
    * Generator code (assafshocher/BlindSR_dataset_generator, named by KernelGAN's author
      in sefibk/KernelGAN issue #70): lambdas are the covariance eigenvalues, theta =
      U[0, 1) * pi, noise factor ``1 + U[-n, n]`` per tap, then the centre of mass is moved
      by a sub-pixel shift and the kernel normalised. The shift puts the centre of mass half
      a pixel down-right of the middle tap (KernelGAN's ``kernel_shift``), so that blurring
      and keeping pixels 0, 2, 4, ... gives LR pixels centred between HR pixels, on MATLAB
      bicubic's grid: a bicubic upscale of the LR lines up with the HR.
    * x4: the LR images were made by applying the x2 procedure twice with the same kernel
      (author's answer in sefibk/KernelGAN issue #59); the stored ``gt_k_x4`` kernels are
      31x31 (assafshocher/ResizeRight issue #4), i.e. the analytic composition
      (:func:`analytic_x4_kernel`), whose centre of mass is then 1.5 pixels down-right of
      the middle: bicubic's x4 grid.

    dynsr's version: the Gaussian is centred at the wanted point (``grid="bicubic"``: 0.5
    pixel down-right of the middle tap, DIV2KRK's; ``"middle"``: the middle tap, for
    subsampling on the HR grid as SRMD/KAIR), multiplied by the noise, normalised, and its
    centre of mass moved back to that point (bilinear sub-pixel shift of the noise's small
    displacement, so taps stay non-negative) and normalised again. Returns (k, k) or
    (batch, k, k).
    """
    if scale not in (2, 4):
        raise ValueError(f"DIV2KRK defines x2 and x4 kernels only, got scale {scale!r}")
    if not 0 <= noise_level < 1:
        raise ValueError(f"noise_level must be in [0, 1), got {noise_level}")
    if grid not in ("bicubic", "middle"):
        raise ValueError(f"grid must be 'bicubic' or 'middle', got {grid!r}")
    centre = 0.5 if grid == "bicubic" else 0.0
    gen = make_generator(generator)
    num = 1 if batch is None else batch
    lo, hi = lambda_range
    f64 = torch.float64
    # Fixed draw order (lambda1, lambda2, theta, noise) so a seed pins every kernel.
    lambda1 = lo + (hi - lo) * torch.rand(num, generator=gen, dtype=f64)
    lambda2 = lo + (hi - lo) * torch.rand(num, generator=gen, dtype=f64)
    theta = math.pi * torch.rand(num, generator=gen, dtype=f64)
    noise = torch.rand(num, DIV2KRK_SIZE, DIV2KRK_SIZE, generator=gen, dtype=f64)
    kernels = anisotropic_gaussian(DIV2KRK_SIZE, lambda1, lambda2, theta, centre_offset=centre,
                                   dtype=f64)
    kernels = kernels * (1 + noise_level * (2 * noise - 1))
    kernels = recentre_kernel(kernels / kernels.sum(dim=(-2, -1), keepdim=True), centre)
    if scale == 4:
        kernels = analytic_x4_kernel(kernels)
    kernels = kernels.to(dtype)
    return kernels[0] if batch is None else kernels


def _read_kernel_array(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise ValueError("the .npz archive holds no array")
            return archive[archive.files[0]]
    if suffix in (".txt", ".csv"):
        text = path.read_text(encoding="utf-8")
        rows = [line.replace(",", " ").split() for line in text.splitlines()]
        rows = [row for row in rows if row and not row[0].startswith("#")]
        if not rows:
            raise ValueError("the file holds no numbers")
        if len({len(row) for row in rows}) != 1:
            raise ValueError("rows have different numbers of values")
        return np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    raise ValueError(f"unsupported kernel file type {suffix or '(none)'!r}; "
                     "use .npy, .npz, .txt or .csv")


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """(..., k, k) kernels zero-padded around their middle tap to (..., size, size); k and
    size odd (or both even), k <= size."""
    pad, rest = divmod(size - kernel.shape[-1], 2)
    if pad < 0 or rest:
        raise ValueError(f"cannot centre a {kernel.shape[-1]}x{kernel.shape[-1]} kernel in "
                         f"{size}x{size}")
    return F.pad(kernel, (pad, pad, pad, pad)) if pad else kernel


def save_kernel(path: str | Path, kernel: torch.Tensor, *,
                dtype: np.dtype = np.float64) -> Path:
    """A kernel as a ``.npy`` file (``dtype``), written atomically; :func:`load_kernel` reads it."""
    from dynsr.io import atomic_write_bytes  # late: dynsr.io is not needed to make kernels

    buffer = io.BytesIO()
    np.save(buffer, kernel.detach().cpu().numpy().astype(dtype), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def load_kernel(path: str | Path, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read a blur kernel from .npy, .npz (its first array), or .txt/.csv text.

    Text files hold one kernel row per line, values separated by whitespace or commas
    (lines starting with ``#`` are skipped). The kernel must be 2-D, square, of odd size
    (so it has a middle tap), finite, with a positive sum; it is returned normalised to sum 1.
    Every problem raises ``ValueError("<path>: <reason>")`` on one line.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ValueError("no such file")
        try:
            array = _read_kernel_array(path)
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read it ({type(err).__name__})") from err
        except ValueError as err:
            if "could not convert" in str(err):
                raise ValueError("it holds a value that is not a number") from err
            raise
        array = np.asarray(array)
        if array.dtype.kind not in "fiu":
            raise ValueError(f"it holds {array.dtype} data, not numbers")
        array = array.astype(np.float64)
        # Accept (k, k, 1)-style exports: drop extra singleton axes, never the kernel's own.
        while array.ndim > 2 and 1 in array.shape:
            array = np.squeeze(array, axis=array.shape.index(1))
        if array.ndim != 2:
            raise ValueError(f"a kernel must be 2-D, got shape {array.shape}")
        if array.shape[0] != array.shape[1]:
            raise ValueError(f"a kernel must be square, got {array.shape[0]}x{array.shape[1]}")
        if array.shape[0] % 2 == 0:
            raise ValueError(f"a kernel must have an odd size (a middle tap), got {array.shape[0]}")
        if not np.isfinite(array).all():
            raise ValueError("the kernel holds NaN or infinite values")
        total = float(array.sum())
        if not total > 0:
            raise ValueError(f"the kernel must have a positive sum, got {total:g}")
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return torch.from_numpy(array / total).to(dtype)
