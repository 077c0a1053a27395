"""UDVD: Unified Dynamic Convolutional Network for super-resolution with Variational Degradations.

Paper
-----
Y.-S. Xu, S.-Y. R. Tseng, Y. Tseng, H.-K. Kuo, Y.-M. Tsai, "Unified Dynamic Convolutional
Network for Super-Resolution with Variational Degradations", CVPR 2020. Non-blind: the network
is told how the LR image was made (blur kernel and noise level, possibly per pixel) and one
network serves every degradation. No official code exists; this is dynsr's own implementation
from the paper.

Degradation (Eq. 1): ``I_LR = (I_HR ⊗ k)↓s + n``, k an isotropic Gaussian on a 15×15 grid with
width in [0.2, 3.0], MATLAB bicubic ↓s, AWGN with sigma in [0, 75] (0..255 scale); see
:func:`dynsr.degrade.degrade`. As in SRMD the kernel is projected on a 15-dim PCA basis and the
noise level appended, giving a (16, h, w) degradation map (:func:`dynsr.degrade.degradation_map`)
that is concatenated with the LR image: 19 input channels.

Architecture (paper Fig. 2, as built here; C channels, N residual blocks, blocks string β)::

    lr (3, h, w) ─┬──────────────────────────────────────────────────── I⁰ ──┐
    map (16,h,w) ─┴─ concat (19) ─ conv 19→C ─┬─ N × [conv-ReLU-conv, +skip] ─ conv ─(+)─ F
                                              └────────────── global skip ─────────┘
    for m = 1 … M (β[m] ∈ {D, U}), image I^{m-1} at (R·h, R·w), R = product of earlier U rates:
        G   = conv 3→16, ReLU, conv 16→16, ReLU, conv 16→32  (I^{m-1})
        J   = concat(G, F_R)                      F_R: F brought to R× by sub-pixel convs
        K   = conv 3×3 J → k²  (D)  |  k²·r² (U)  per-pixel kernels, tap-major then sub-pixel
        O^m = dynamic_filter(I^{m-1}, K)  (Eq. 2)  |  dynamic_upsample(I^{m-1}, K, r)  (Eq. 3)
        R^m = conv 3×3 J → 16, ReLU, conv → 3                                       (D)
              conv 3×3 J → 16·r², ReLU, pixel-shuffle r → 16 ch, conv → 3          (U)
        I^m = O^m + R^m
    output I^M at (s·h, s·w); every I^m is returned for the multistage loss (Eq. 4).

The per-pixel kernels are shared by the three colour channels (the paper's default). Every conv
is 3×3 with bias; activations are ReLU.

Configurations (paper Table 1, Set5 x3, width 1.3, noise 15, PSNR / SSIM): baseline (trunk +
sub-pixel layer) 29.45 / .8350; U 29.56 / .8384; DU 29.58 / .8393; UD 29.61 / .8400; UDD without
the multistage loss 29.58 / .8385; **UDD 29.67 / .8410**. The paper uses UDD for x2 and x3 and
"UDD with two separate upsampling steps" for x4. Default block strings here:

* x2: ``"UDD"`` (U at rate 2), x3: ``"UDD"`` (U at rate 3);
* x4: ``"UUDD"``: the U of UDD split into two x2 U blocks, then the two D blocks at full size.

Any string of ``U``/``D`` may be configured (``blocks=``) as long as its U blocks can share one
integer rate whose power is the scale: one U takes rate s; two U's need s = r² (x4 → 2, 2).

Multistage loss (Eq. 4): ``Loss = Σ_m F(I^m, I_HR)``, F = L2 in the paper. Outputs before the
last U are smaller than HR (LR size for a D before the first U, 2h for the first U of x4's
UUDD). dynsr compares those with the HR image bicubic-downsampled (MATLAB ``imresize``, with
antialiasing) to their size, as LapSRN, the paper's reference [15] for the multistage loss,
supervises each pyramid level; :func:`multistage_targets` builds the pairs and
:func:`multistage_loss` sums them. ``smaller="skip"`` leaves them out instead. With the
default strings for x2/x3 every output is HR-sized and both options are the paper's Eq. 4.

Paper results (Table 2, PSNR on Y, UDVD / SRMD)::

    width noise | Set5 x2     x3          x4          | Set14 x2    x3          x4
    0.2   15    | 32.96/32.76 30.68/30.43 29.04/28.79 | 30.43/30.14 28.14/27.82 26.82/26.48
    1.3   15    | 31.16/30.98 29.67/29.43 28.43/28.21 | 28.63/28.34 27.36/27.05 26.37/26.06
    2.6   15    | 28.73/28.48 27.80/27.55 26.98/26.82 | 26.48/26.18 25.87/25.58 25.33/25.06
    0.2   50    | 28.63/28.51 26.65/26.48 25.34/25.18 | 27.00/26.70 25.32/25.01 24.24/23.95
    1.3   50    | 27.54/27.43 25.99/25.82 24.92/24.77 | 25.88/25.63 24.75/24.47 23.91/23.64
    2.6   50    | 26.00/25.85 24.85/24.75 24.11/23.98 | 24.60/24.32 23.81/23.53 23.23/22.98

BSD100 (same rows, x2/x3/x4): 29.38/27.27/26.08, 27.64/26.58/25.74, 25.93/25.41/24.96,
26.27/24.87/23.98, 25.36/24.45/23.74, 24.41/23.79/23.27. Spatially variant degradations
(Table 3, width 0.2 → 2 and noise 5 → 50 rising left to right): Set5 29.37 / 27.74 / 26.57
(SRMD 28.53 / 27.06 / 26.05). Noise-free model (Table 4, Set5 width 1.3): 37.36 / 34.52 / 32.37.
Training (Sec. 4.1): DIV2K + Flickr2K, LR patches 48, batch 32, flips and 90° rotations,
Adam 1e-4 halved every 2·10⁵ steps, multistage L2 loss.

Registered names
----------------
* ``udvd``: the paper's trunk, C = 128, N = 15: 5.57 M parameters at x2, 6.60 M at x3,
  6.40 M at x4 (the paper states no count). The trunk is 4.60 M of them; the rest is mostly
  the sub-pixel feature upsamplers (0.59 M per x2 stage, 1.33 M for x3).
* ``udvd-lite``: C = 64, N = 8: 1.02 M parameters at x2, 1.38 M at x3, 1.32 M at x4. The
  trunk costs 9·C²·2N multiply-adds per LR pixel, 1/7.5 of the paper's; the refinement
  network is the same. Measured on this CPU (one thread, CPU time, batch 8, LR 48², x2,
  forward + backward of the multistage loss): 0.85 s fp32 / 0.48 s bf16 autocast, against
  3.3 s / 1.6 s for ``udvd``. Batch 16 on the 2 cores should then take about 1 s per step
  when the cores are free, so 10⁴ steps (a useful fraction of a schedule) take about 3 hours;
  the paper's trunk needs 3-4 times as long.

* ``udvd-wide``: C = 128 (the paper's width), N = 8 (``udvd-lite``'s depth): 3.50 M parameters
  at x2, 4.53 M at x3, 4.33 M at x4. The issue-23 probes found the width the largest single
  lever for a CPU budget (+0.31 dB over C = 64 at 3,000 steps); its x2 weights
  (``configs/udvd_x2_c128_cpu.yaml``, trained as ``udvd-lite`` with ``channels: 128``) ship
  under this name so that ``udvd-lite``, the network ``--blind`` runs, stays fast; x3 and x4
  fine-tune them (``configs/udvd_x3_c128_cpu.yaml``, ``udvd_x4_c128_cpu.yaml``). Weights ship
  for x2, x3 and x4: above ``udvd-lite`` in all 36 Table 2 cells, under SRMD in all 36
  (docs/results.md).

Forward cost on a 256×256 LR image (``dynsr models``, multiply-add = 2): ``udvd`` 782 / 1005 /
1430 GFLOPs at x2 / x3 / x4, ``udvd-lite`` 168 / 273 / 461.

Both accept ``blocks``, ``kernel_size`` (odd, default 5), ``kernel_normalization``
(``"none"`` default, or ``"softmax"``), ``channels`` and ``num_residual_blocks``.

Inputs of :meth:`UDVD.forward`
------------------------------
``lr`` (B, 3, h, w) RGB in [0, 1]. ``blur`` describes the kernel the LR image was blurred with
on the HR grid before downsampling:

* ``None``: no blur, i.e. the code of a delta kernel (width 0). It differs from the narrowest
  trained width 0.2 by < 4·10⁻⁶ per tap (exp(-12.5)), so it is inside the training range;
* a width (number or (B,) tensor): isotropic Gaussian standard deviation on the 15×15 grid;
* a kernel (k, k) or (B, k, k), k odd ≤ 15 (zero-padded to 15×15 before the PCA projection);
* a width map (B, 1, h, w) or per-pixel kernels (B, k², h, w) on the **LR grid**: one entry
  per LR pixel, describing the blur around that pixel (use
  :func:`dynsr.degrade.downsample_map` to bring an HR-grid width map there);
* a code map (B, 15, h, w) on the LR grid: the kernels' 15 PCA coefficients per LR pixel,
  as the degradation estimator (:mod:`dynsr.models.degradation_estimator`) reads them.

``noise``: AWGN sigma on the 0..255 scale: ``None``/number, (B,) tensor, or an LR-grid map
(B, 1, h, w). Batch sizes of 1 broadcast. Anything else raises ``ValueError`` naming the
problem. ``forward_with_map(lr, dmap)`` takes a ready (B, 16, h, w) map instead.

Deviations
----------
What the paper leaves open or states loosely, and what dynsr chose:

1. Residual blocks: conv-ReLU-conv with an identity skip, no batch norm, no scaling (EDSR
   style); the trunk ends with a conv before the global skip (Fig. 2 shows blocks and a global
   skip, not the exact layer list).
2. No activation after the image path's last conv (16→32) nor on F before the concatenation;
   the two heads read the concatenation directly.
3. Bringing F to an upsampled image's resolution ("sub-pixel convolution"): one stage per U
   block, conv 3×3 C→C·r² then pixel-shuffle r, chained (F_2 = stage₁(F), F_4 = stage₂(F_2)
   for x4's UUDD), computed once per forward and shared by all blocks at that resolution.
   Stages no block reads are not built (U as the last block needs none).
4. The residual head of a U block is a sub-pixel convolution: conv J → 16·r², ReLU,
   pixel-shuffle to 16 channels at r×, then conv 16→3 at the output resolution (the paper's
   16 → 3 convs with "sub-pixel convolution to align the resolutions").
5. Kernels are used as predicted, not normalised (the paper mentions no softmax);
   ``kernel_normalization="softmax"`` normalises each (sub-pixel's) k² taps to sum 1, as DUF
   ([30]) does, for ablations.
6. Initialisation (not in the paper): the kernel heads' weights are PyTorch's default scaled by
   0.1 and their biases put all weight on the centre tap, so at initialisation O^m is the
   block's input (D) or its nearest-neighbour upsampling (U) plus small per-pixel variations;
   with softmax the centre logit starts at log(k²) (half the weight). Other layers: default.
7. Eq. 2 is written as a convolution (``I_in(i-u, j-v)``); ``dynamic_filter`` correlates
   (``x[i+u-p, j+v-p]``, taps row-major). For predicted kernels this only relabels the taps;
   flip a kernel to compare it with the paper's Fig. 4. Eq. 3 as printed sums over x, y; dynsr
   follows the text and Fig. 3(b): each of the r² sub-pixels has its own kernel, no sum.
   Zero padding at the image border for the dynamic filters (not stated in the paper).
8. x4 block string ``"UUDD"`` for "UDD (two separated upsampling steps)"; D blocks before the
   first U (configuration DU) work on the LR grid with F as is.
9. Multistage targets for outputs smaller than HR: the HR image bicubic-downsampled to their
   size (not stated in the paper; only the x4 default and the DU/… ablations have such outputs).
10. ``blur=None`` means the delta kernel (see above); degradation maps for per-pixel inputs
    are on the LR grid. The wrapper builds the map with autocast disabled, so the PCA code is
    computed in full precision under bf16 autocast.
11. The PCA basis is dynsr's own (see :mod:`dynsr.degrade.degradation_map`), not SRMD's file:
    weights trained elsewhere would need the same basis.

State-dict keys: ``features.{head,tail}``, ``features.body.{n}.{conv1,conv2}``,
``feature_upsamplers.{j}.conv`` (stage j → j+1), ``refinement.{m}.image_path.{0,2,4}``,
``refinement.{m}.kernel_head``, ``refinement.{m}.residual_head.{0,3}`` (each ``.weight``,
``.bias``; m counts blocks from 0 in the order of the block string).

Memory layout: the model runs in the input's memory format (contiguous or channels_last) and
returns the output in it; the per-pixel kernels are handed to the dynamic ops contiguous
(the kernel heads run on a contiguous copy of their input under channels_last, see
:mod:`dynsr.ops.dynamic` for why). Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the
convs run in bf16 while the image path I^m stays float32 (the dynamic ops accumulate in
float32 and return the image's dtype).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.degrade.degradation_map import PCA_DIM, PCA_KERNEL_SIZE, degradation_map
from dynsr.models.blocks import ResidualBlock, conv3x3
from dynsr.models.registry import register
from dynsr.ops.dynamic import dynamic_filter, dynamic_upsample
from dynsr.ops.resize import imresize

__all__ = [
    "DEFAULT_BLOCKS",
    "DynamicBlock",
    "UDVD",
    "block_rates",
    "build_degradation_map",
    "multistage_loss",
    "multistage_targets",
]

# Paper Sec. 4.2: UDD for x2 and x3; for x4 UDD with two separate (x2) upsampling steps.
DEFAULT_BLOCKS = {2: "UDD", 3: "UDD", 4: "UUDD"}
# Degradation map: 15 PCA coefficients + sigma / 255 (SRMD / UDVD).
MAP_CHANNELS = 16
IMAGE_CHANNELS = 3
# Image path widths of a dynamic block (paper Sec. 3.2) and of the residual head.
IMAGE_PATH_WIDTHS = (16, 16, 32)
RESIDUAL_WIDTH = 16
KERNEL_HEAD_INIT_SCALE = 0.1
KERNEL_NORMALIZATIONS = ("none", "softmax")


def block_rates(blocks: str, scale: int) -> list[int]:
    """Upsampling rate of every block of ``blocks`` (1 for D) so that the U rates multiply to
    ``scale``. All U blocks share one integer rate r with r ** (number of U) == scale.

    Raises:
        ValueError: on letters other than U/D, no U, or a scale the U blocks cannot share.
    """
    if not isinstance(blocks, str) or not blocks or set(blocks) - {"U", "D"}:
        raise ValueError(f"blocks must be a non-empty string of 'U' and 'D', got {blocks!r}")
    num_up = blocks.count("U")
    if num_up == 0:
        raise ValueError(f"blocks {blocks!r} has no U block: nothing would upsample")
    rate = round(scale ** (1.0 / num_up))
    if rate < 2 or rate**num_up != scale:
        raise ValueError(
            f"blocks {blocks!r}: {num_up} U blocks cannot share an integer rate for scale "
            f"{scale} (need rate ** {num_up} == {scale})"
        )
    return [rate if letter == "U" else 1 for letter in blocks]


# --------------------------------------------------------------------------------------------
# building blocks




class FeatureExtractor(nn.Module):
    """conv 19→C, N residual blocks, conv, global skip to the first conv's output."""

    def __init__(self, channels: int, num_residual_blocks: int) -> None:
        super().__init__()
        self.head = conv3x3(IMAGE_CHANNELS + MAP_CHANNELS, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(num_residual_blocks)))
        self.tail = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.head(x)
        return shallow + self.tail(self.body(shallow))


class SubPixelUpsampler(nn.Module):
    """Brings features to ``rate``× resolution: conv C→C·r², pixel-shuffle r (ESPCN)."""

    def __init__(self, channels: int, rate: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels * rate * rate)
        self.shuffle = nn.PixelShuffle(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class DynamicBlock(nn.Module):
    """One refinement block: D (``rate`` 1, Fig. 3(a)) or U (``rate`` r > 1, Fig. 3(b)).

    ``forward(image, features)``: image (B, 3, H, W), features (B, C, H, W) at the image's
    resolution → (B, 3, rate·H, rate·W) = dynamic output + residual.
    """

    def __init__(
        self,
        feature_channels: int,
        rate: int = 1,
        kernel_size: int = 5,
        kernel_normalization: str = "none",
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if kernel_normalization not in KERNEL_NORMALIZATIONS:
            raise ValueError(
                f"kernel_normalization must be one of {KERNEL_NORMALIZATIONS}, "
                f"got {kernel_normalization!r}"
            )
        self.rate = rate
        self.kernel_size = kernel_size
        self.kernel_normalization = kernel_normalization
        w1, w2, w3 = IMAGE_PATH_WIDTHS
        self.image_path = nn.Sequential(
            conv3x3(IMAGE_CHANNELS, w1), nn.ReLU(),
            conv3x3(w1, w2), nn.ReLU(),
            conv3x3(w2, w3),
        )
        joint = w3 + feature_channels
        taps = kernel_size * kernel_size
        self.kernel_head = conv3x3(joint, taps * rate * rate)
        self.residual_head = nn.Sequential(
            conv3x3(joint, RESIDUAL_WIDTH * rate * rate), nn.ReLU(),
            nn.PixelShuffle(rate) if rate > 1 else nn.Identity(),
            conv3x3(RESIDUAL_WIDTH, IMAGE_CHANNELS),
        )
        self._init_kernel_head()

    def _init_kernel_head(self) -> None:
        # Start near the identity (D) / nearest-neighbour upsampling (U): the dynamic path then
        # passes the image through from the first step and the residual path learns details.
        taps = self.kernel_size * self.kernel_size
        centre = taps // 2
        with torch.no_grad():
            self.kernel_head.weight.mul_(KERNEL_HEAD_INIT_SCALE)
            bias = self.kernel_head.bias.view(taps, self.rate * self.rate)
            bias.zero_()
            bias[centre] = 1.0 if self.kernel_normalization == "none" else math.log(taps)

    def joint_features(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """concat(image path(image), features): what both heads read."""
        image_features = self.image_path(image)
        return torch.cat([image_features, features.to(image_features.dtype)], dim=1)

    def predict_kernels(self, joint: torch.Tensor) -> torch.Tensor:
        """Per-pixel kernels (B, k²·rate², H, W), contiguous, tap-major then sub-pixel."""
        # A conv with a channels_last input gives channels_last kernels, which the dynamic ops
        # must transpose tap by tap (slower than the filtering itself): the kernels are made
        # contiguous. Converting them (k²·rate² channels) rather than the joint features
        # (96) before the conv: 0.22 instead of 0.73 s per call for a 768² x2 output (Xeon,
        # AVX-512, 2 threads, fp32).
        kernels = self.kernel_head(joint).contiguous()
        if self.kernel_normalization == "softmax":
            b, _, h, w = kernels.shape
            taps = self.kernel_size * self.kernel_size
            kernels = kernels.view(b, taps, self.rate * self.rate, h, w).softmax(dim=1)
            kernels = kernels.view(b, -1, h, w)
        return kernels

    def apply_kernels(self, image: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """O^m: Eq. 2 (D) or Eq. 3 (U) with the given per-pixel kernels."""
        if self.rate == 1:
            return dynamic_filter(image, kernels, kernel_size=self.kernel_size)
        return dynamic_upsample(image, kernels, self.rate)

    def forward(self, image: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        joint = self.joint_features(image, features)
        dynamic = self.apply_kernels(image, self.predict_kernels(joint))
        residual = self.residual_head(joint)
        return dynamic + residual.to(dynamic.dtype)


# --------------------------------------------------------------------------------------------
# degradation inputs -> map


def _batch_of(value: torch.Tensor, batch: int, name: str) -> None:
    if value.shape[0] not in (1, batch):
        raise ValueError(f"{name}: batch size {value.shape[0]} does not match the LR batch "
                         f"{batch} (give 1 to share it)")


def _check_grid(value: torch.Tensor, size: tuple[int, int], name: str) -> None:
    got = tuple(value.shape[-2:])
    if got != size:
        hint = ""
        if got[0] > size[0] and got[1] > size[1]:
            hint = " (an HR-grid map? bring it to the LR grid with dynsr.degrade.downsample_map)"
        raise ValueError(f"{name}: map of size {got} does not match the LR image {size}; "
                         f"per-pixel maps are on the LR grid{hint}")


def _non_negative(value: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")


def _blur_arguments(
    blur: float | torch.Tensor | None, batch: int, size: tuple[int, int], device: torch.device
) -> dict:
    """degradation_map keyword arguments for one ``blur`` description (see the module doc)."""
    if blur is None:
        return {"width": 0.0}  # delta kernel: no blur
    if isinstance(blur, bool) or not isinstance(blur, int | float | torch.Tensor):
        raise ValueError(f"blur must be None, a width, a kernel tensor or a width map, "
                         f"got {type(blur).__name__}")
    if not isinstance(blur, torch.Tensor):
        _non_negative(torch.tensor(float(blur)), "blur width")
        return {"width": float(blur)}
    value = blur.detach().to(device=device, dtype=torch.float32)
    if value.dim() in (0, 1):  # width(s)
        if value.dim() == 1:
            _batch_of(value, batch, "blur widths")
        _non_negative(value, "blur width")
        return {"width": value}
    if value.dim() in (2, 3):  # kernel(s) (k, k) / (B, k, k)
        k = value.shape[-1]
        if value.shape[-2] != k:
            raise ValueError(f"blur kernel must be square, got shape {tuple(value.shape)}")
        if k % 2 == 0 or k > PCA_KERNEL_SIZE:
            raise ValueError(f"blur kernel must be k×k with k odd and ≤ {PCA_KERNEL_SIZE}, "
                             f"got {k}×{k}")
        if value.dim() == 3:
            _batch_of(value, batch, "blur kernels")
        return {"kernel": value}
    if value.dim() == 4:  # per-pixel: width map (B, 1, h, w) or kernels (B, k², h, w)
        _batch_of(value, batch, "blur map")
        _check_grid(value, size, "blur map")
        channels = value.shape[1]
        if channels == 1:
            _non_negative(value, "blur width map")
            return {"width": value}
        if channels == PCA_DIM:  # per-pixel PCA codes, as the degradation estimator gives
            if not bool(torch.isfinite(value).all()):
                raise ValueError("blur code map must be finite")
            return {"code": value}
        k = math.isqrt(channels)
        if k * k != channels or k % 2 == 0 or k > PCA_KERNEL_SIZE:
            raise ValueError(f"per-pixel blur must be a width map (B, 1, h, w) or kernels "
                             f"(B, k², h, w) with k odd ≤ {PCA_KERNEL_SIZE}, got {channels} "
                             f"channels")
        return {"kernel": value}
    raise ValueError(f"blur tensor must have 0-4 dimensions, got shape {tuple(blur.shape)}")


def _noise_argument(
    noise: float | torch.Tensor | None, batch: int, size: tuple[int, int], device: torch.device
) -> float | torch.Tensor:
    if noise is None:
        return 0.0
    if isinstance(noise, bool) or not isinstance(noise, int | float | torch.Tensor):
        raise ValueError(f"noise must be None, a sigma, (B,) sigmas or a (B, 1, h, w) map, "
                         f"got {type(noise).__name__}")
    if not isinstance(noise, torch.Tensor):
        _non_negative(torch.tensor(float(noise)), "noise sigma")
        return float(noise)
    value = noise.detach().to(device=device, dtype=torch.float32)
    if value.dim() == 4:
        if value.shape[1] != 1:
            raise ValueError(f"noise map must be (B, 1, h, w), got shape {tuple(value.shape)}")
        _check_grid(value, size, "noise map")
    elif value.dim() > 1:
        raise ValueError(f"noise must be a sigma, (B,) sigmas or a (B, 1, h, w) map, "
                         f"got shape {tuple(value.shape)}")
    if value.dim() in (1, 4):
        _batch_of(value, batch, "noise")
    _non_negative(value, "noise sigma")
    return value


def build_degradation_map(
    lr: torch.Tensor,
    blur: float | torch.Tensor | None = None,
    noise: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """The (B, 16, h, w) degradation map of ``lr`` (B, 3, h, w) in lr's dtype and device.

    ``blur`` / ``noise`` as :meth:`UDVD.forward` takes them (module doc); per-pixel maps are on
    the LR grid. Raises ``ValueError`` for anything it cannot read.
    """
    if lr.dim() != 4:
        raise ValueError(f"lr must be (B, 3, h, w), got shape {tuple(lr.shape)}")
    batch, size = lr.shape[0], (lr.shape[-2], lr.shape[-1])
    blur_kwargs = _blur_arguments(blur, batch, size, lr.device)
    noise_value = _noise_argument(noise, batch, size, lr.device)
    # Full precision for the PCA projection even inside a bf16 autocast region.
    with torch.autocast(device_type=lr.device.type, enabled=False):
        dmap = degradation_map(noise_sigma=noise_value, size=size, dtype=torch.float32,
                               device=lr.device, **blur_kwargs)
    return dmap.expand(batch, -1, -1, -1).to(lr.dtype)


# --------------------------------------------------------------------------------------------
# the model


class UDVD(nn.Module):
    """UDVD for one scale (module doc). ``forward(lr, blur=None, noise=None, return_all=False)``.

    Args:
        scale: 2, 3 or 4.
        channels: trunk width C (paper 128).
        num_residual_blocks: trunk depth N (paper 15).
        blocks: refinement blocks as a string of U/D; default :data:`DEFAULT_BLOCKS` [scale].
        kernel_size: per-pixel kernel size k (odd, paper 5).
        kernel_normalization: ``"none"`` (kernels as predicted) or ``"softmax"`` over taps.
    """

    def __init__(
        self,
        scale: int,
        channels: int = 128,
        num_residual_blocks: int = 15,
        blocks: str | None = None,
        kernel_size: int = 5,
        kernel_normalization: str = "none",
    ) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ValueError(f"scale must be an integer ≥ 2, got {scale!r}")
        if channels < 1 or num_residual_blocks < 0:
            raise ValueError(f"need channels ≥ 1 and num_residual_blocks ≥ 0, got {channels}, "
                             f"{num_residual_blocks}")
        self.scale = scale
        self.blocks = DEFAULT_BLOCKS.get(scale, "UDD") if blocks is None else blocks
        self.rates = block_rates(self.blocks, scale)
        self.features = FeatureExtractor(channels, num_residual_blocks)

        # Resolution stage of each block's input: the number of U blocks before it. Stage j's
        # features come from stage j-1's through upsampler j-1 (built only if some block reads
        # stage j).
        self.stages = [self.blocks[:m].count("U") for m in range(len(self.blocks))]
        up_rate = max(self.rates)
        self.feature_upsamplers = nn.ModuleList(
            SubPixelUpsampler(channels, up_rate) for _ in range(max(self.stages))
        )
        self.refinement = nn.ModuleList(
            DynamicBlock(channels, rate, kernel_size, kernel_normalization)
            for rate in self.rates
        )

    def output_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(H, W) of every block's output for an LR input of (height, width)."""
        sizes, factor = [], 1
        for rate in self.rates:
            factor *= rate
            sizes.append((factor * height, factor * width))
        return sizes

    def forward_with_map(self, lr: torch.Tensor, dmap: torch.Tensor) -> list[torch.Tensor]:
        """The core: lr (B, 3, h, w) and a degradation map (B, 16, h, w) → every block's output
        I¹ … I^M (sizes: :meth:`output_sizes`), the last being the SR image."""
        if lr.dim() != 4 or lr.shape[1] != IMAGE_CHANNELS:
            raise ValueError(f"lr must be (B, 3, h, w), got shape {tuple(lr.shape)}")
        if dmap.dim() != 4 or dmap.shape[1] != MAP_CHANNELS or dmap.shape[-2:] != lr.shape[-2:]:
            raise ValueError(f"degradation map must be (B, 16, {lr.shape[-2]}, {lr.shape[-1]}), "
                             f"got shape {tuple(dmap.shape)}")
        fmt = (torch.channels_last if lr.is_contiguous(memory_format=torch.channels_last)
               and not lr.is_contiguous() else torch.contiguous_format)
        x = torch.cat([lr, dmap.expand(lr.shape[0], -1, -1, -1).to(lr.dtype)], dim=1)
        stage_features = [self.features(x.contiguous(memory_format=fmt))]
        for upsampler in self.feature_upsamplers:
            stage_features.append(upsampler(stage_features[-1]))

        image = lr.contiguous(memory_format=fmt)
        outputs = []
        for block, stage in zip(self.refinement, self.stages, strict=True):
            image = block(image, stage_features[stage])
            outputs.append(image)
        return outputs

    def forward(
        self,
        lr: torch.Tensor,
        blur: float | torch.Tensor | None = None,
        noise: float | torch.Tensor | None = None,
        return_all: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """lr (B, 3, h, w) in [0, 1] → SR (B, 3, s·h, s·w); ``return_all``: every block's output.

        ``blur`` and ``noise`` describe the degradation (module doc); ``ValueError`` on
        inputs that cannot be read.
        """
        outputs = self.forward_with_map(lr, build_degradation_map(lr, blur, noise))
        return outputs if return_all else outputs[-1]


# --------------------------------------------------------------------------------------------
# multistage loss (Eq. 4)


def multistage_targets(
    hr: torch.Tensor, outputs: Sequence[torch.Tensor], smaller: str = "bicubic"
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(output, target) pairs for Eq. 4: HR-sized outputs against ``hr``; smaller outputs
    against ``hr`` MATLAB-bicubic-downsampled to their size (``smaller="bicubic"``) or left
    out (``smaller="skip"``).

    Raises:
        ValueError: for an unknown ``smaller`` or an output larger than ``hr``.
    """
    if smaller not in ("bicubic", "skip"):
        raise ValueError(f"smaller must be 'bicubic' or 'skip', got {smaller!r}")
    hr_size = tuple(hr.shape[-2:])
    resized: dict[tuple[int, int], torch.Tensor] = {}
    pairs = []
    for output in outputs:
        size = tuple(output.shape[-2:])
        if size == hr_size:
            pairs.append((output, hr))
            continue
        if size[0] > hr_size[0] or size[1] > hr_size[1]:
            raise ValueError(f"output of size {size} is larger than the HR image {hr_size}")
        if smaller == "skip":
            continue
        if size not in resized:
            with torch.no_grad():
                resized[size] = imresize(hr, size=size)
        pairs.append((output, resized[size]))
    return pairs


def multistage_loss(
    hr: torch.Tensor,
    outputs: Sequence[torch.Tensor],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.mse_loss,
    smaller: str = "bicubic",
) -> torch.Tensor:
    """Eq. 4: ``Σ_m loss(I^m, target_m)`` over :func:`multistage_targets` (L2 by default)."""
    pairs = multistage_targets(hr, outputs, smaller)
    if not pairs:
        raise ValueError("no output to compare with the HR image")
    return sum((loss(out.float(), target.float()) for out, target in pairs),
               start=torch.zeros((), device=hr.device))


# --------------------------------------------------------------------------------------------
# registry

_PAPER = ("Xu et al., Unified Dynamic Convolutional Network for Super-Resolution with "
          "Variational Degradations, CVPR 2020")


@register("udvd", scales=(2, 3, 4), paper=_PAPER, needs_degradation=True,
          summary="UDVD, non-blind dynamic-kernel SR for blur + noise (C=128, N=15, paper)",
          channels=128, num_residual_blocks=15)
@register("udvd-wide", scales=(2, 3, 4), paper=_PAPER, needs_degradation=True,
          summary="UDVD with the paper's width and udvd-lite's depth (C=128, N=8)",
          channels=128, num_residual_blocks=8)
@register("udvd-lite", scales=(2, 3, 4), paper=_PAPER, needs_degradation=True,
          summary="UDVD with a CPU-trainable trunk (C=64, N=8)",
          channels=64, num_residual_blocks=8)
def udvd(scale: int, **config) -> nn.Module:
    return UDVD(scale, **config)
