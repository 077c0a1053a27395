"""KernelGAN (Bell-Kligler, Shocher, Irani, NeurIPS 2019): blind x2 kernel estimation.

A deep *linear* generator G_DN learns to downscale crops of the one input image so that a
patch discriminator D_DN cannot tell its output from real crops of the image; the kernel
G_DN imitates is the estimate. DualSR (:mod:`dynsr.zeroshot.dualsr`) reuses G_DN, D_DN
and the kernel priors.

Facts taken from the authors' releases (sefibk/KernelGAN; memad73/DualSR, whose
``networks.py``/``loss.py``/``learner.py`` copy KernelGAN's), and dynsr's choices:

* G_DN: bias-free convolutions [7, 5, 3, 1, 1, 1], 64 channels, each colour channel run as
  its own one-channel image; stride 2 on the 3x3 layer (DualSR; KernelGAN strides its last
  1x1 layer, which gives the same output because 1x1 layers commute with subsampling).
  Weights ~ N(1/n, 1/n), n = fan-in. Valid convolutions: output ``(H - 13)//2 + 1``.
* Because G_DN is linear it equals one 13x13 stride-2 correlation with the composed kernel
  (:meth:`DeepLinearGenerator.kernel`, DualSR's ``calc_curr_k``: a unit impulse through the
  layers with full padding, flipped). dynsr computes the forward pass that way by default
  (same output, same gradients, far fewer operations); ``composed=False`` is the
  layer-by-layer network.
* D_DN: 7x7 spectral-norm conv (no ReLU) → 5 × (1x1 SN conv, BatchNorm, ReLU) → 1x1 SN conv
  → sigmoid; init xavier_normal(gain 0.1), biases 0, BatchNorm weight ~ N(1, 0.02). LSGAN.
* Priors (KernelGAN ``loss.py``): bicubic = MSE between G_DN(y) and y filtered with the 8x8
  MATLAB x2 bicubic kernel (stride 2, padding 3, centre-shaved to G_DN's output), weight 5;
  sum-to-one = ``|1 - sum k|``, 0.5; boundaries = mean ``|k * mask|`` with mask = 30 ×
  (1 − Gaussian(σ=13)/max) zeroed on the central 9x9, 0.5; centre of mass = MSE of the
  centre of mass against ``13//2 + 0.5 = 6.5`` (both axes), 0 then 1; sparsity = mean
  ``|k|^0.2``, 0 then 5.
  Deviation: the releases expand the bicubic kernel to a (3, 3, 8, 8) weight, so each
  channel's target is the *sum* of the three channels' bicubic downscales; dynsr compares
  each channel with its own bicubic downscale.
* Schedule (KernelGAN ``learner.py``): once the bicubic loss was below 0.4 for three
  iterations in a row, every 200 iterations the bicubic weight is divided by 100 (floor
  5e-6); when it falls below 5e-3 the centre-of-mass (1) and sparsity (5) priors switch on.
  Learning rates divided by 10 every 750 iterations (DualSR: by 4).
* Post-processing (KernelGAN ``util.post_process_k``): subtract 0.75 × the 41st largest tap
  (``n_filtering = 40``), clip at 0, renormalise to sum 1, pad with ``ceil(max|shift|) + 1``
  zeros and shift the centre of mass with a sub-pixel shift to ``size//2 + 0.5``, half a
  pixel down-right of the middle tap, as KernelGAN: the kernel then describes "blur, keep
  pixels 0, 2, 4, ..." (:func:`dynsr.degrade.blur` + :func:`dynsr.degrade.subsample`) of
  an LR image on MATLAB bicubic's grid, like DIV2KRK's kernels
  (:func:`dynsr.degrade.div2krk_kernel`), and the centre-of-mass prior already pulls G_DN
  there during training. dynsr shifts bilinearly (non-negative taps) instead of with a
  cubic spline.
* Kernel orientation: correlation, as :func:`dynsr.degrade.blur` applies it.
* x4: :func:`dynsr.degrade.analytic_x4_kernel` of the x2 estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from dynsr.degrade import analytic_x4_kernel, center_of_mass
from dynsr.degrade.kernels import recentre_kernel
from dynsr.ops.resize import resize_weights

__all__ = [
    "CROP_SAMPLING",
    "GRID_OFFSET",
    "G_DN_LAYERS",
    "DeepLinearGenerator",
    "KernelPriors",
    "PatchDiscriminator",
    "PriorSchedule",
    "bicubic_x2_kernel",
    "boundary_mask",
    "crop_probabilities",
    "crop_sampler",
    "estimate_kernel",
    "lsgan_loss",
    "post_process_kernel",
    "sample_crops",
    "shave_to",
]

# How crop corners are drawn, recorded in `dynsr eval` JSON files: result files without it
# drew them with torch.multinomial (the same distribution, another random stream).
CROP_SAMPLING = "inverse CDF (searchsorted of one uniform per crop)"

G_DN_LAYERS = (7, 5, 3, 1, 1, 1)
N_FILTERING = 40  # KernelGAN's --n_filtering: taps kept when small values are zeroed
# Where an x2 kernel's centre of mass goes, in pixels down-right of the middle tap: blurring
# and keeping pixels 0, 2, 4, ... then puts LR pixels on MATLAB bicubic's grid (KernelGAN).
GRID_OFFSET = 0.5
BORDER = 10  # pixels never sampled by the crop sampler (DualSR shaves 10 px)


def _per_channel(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B*C, 1, H, W): every colour channel is its own image."""
    return x.reshape(-1, 1, x.shape[-2], x.shape[-1])


class DeepLinearGenerator(nn.Module):
    """G_DN: a bias-free deep linear network that downscales by 2 (see the module docstring).

    ``composed=True`` (default) runs one 13x13 stride-2 convolution with :meth:`kernel`;
    ``False`` runs the layers one by one. Both give the same values and gradients.
    """

    def __init__(self, channels: int = 64, layers: Sequence[int] = G_DN_LAYERS,
                 composed: bool = True) -> None:
        super().__init__()
        self.layer_sizes = tuple(layers)
        self.composed = composed
        # The 3x3 layer downsamples (DualSR); every other layer has stride 1.
        self.strides = tuple(2 if size == 3 else 1 for size in self.layer_sizes)
        if self.strides.count(2) != 1:
            raise ValueError("G_DN needs exactly one 3x3 (stride-2) layer")
        self.weights = nn.ParameterList()
        for index, size in enumerate(self.layer_sizes):
            c_in = 1 if index == 0 else channels
            c_out = 1 if index == len(self.layer_sizes) - 1 else channels
            self.weights.append(nn.Parameter(torch.empty(c_out, c_in, size, size)))
        self.kernel_size = sum(self.layer_sizes) - len(self.layer_sizes) + 1
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for weight in self.weights:
            fan_in = weight[0].numel()
            # N(1/n, 1/n): the composed kernel starts near a positive, sum-one blur.
            weight.normal_(1.0 / fan_in, 1.0 / fan_in, generator=generator)

    def kernel(self) -> torch.Tensor:
        """The (13, 13) correlation kernel the layers compose to (differentiable)."""
        impulse = self.weights[0].new_ones(1, 1, 1, 1)
        response = impulse
        for weight in self.weights:
            # Full correlation of the impulse response with each layer, strides ignored
            # (subsampling commutes with the later 1x1 layers).
            response = F.conv2d(response, weight, padding=weight.shape[-1] - 1)
        # The impulse response of a correlation chain is the composed kernel flipped.
        return response[0, 0].flip(0, 1)

    def forward_layers(self, x: torch.Tensor) -> torch.Tensor:
        out = _per_channel(x)
        for weight, stride in zip(self.weights, self.strides, strict=True):
            out = F.conv2d(out, weight, stride=stride)
        return out.reshape(x.shape[0], x.shape[1], out.shape[-2], out.shape[-1])

    def forward_composed(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        kernel = self.kernel() if kernel is None else kernel
        out = F.conv2d(_per_channel(x), kernel[None, None], stride=2)
        return out.reshape(x.shape[0], x.shape[1], out.shape[-2], out.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_composed(x) if self.composed else self.forward_layers(x)


class PatchDiscriminator(nn.Module):
    """D_DN: fully convolutional patch discriminator, a [0, 1] map (receptive field 7x7)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 7,
                 kernel_size: int = 7) -> None:
        super().__init__()
        self.first = spectral_norm(nn.Conv2d(in_channels, channels, kernel_size))
        body: list[nn.Module] = []
        for _ in range(layers - 2):
            body += [spectral_norm(nn.Conv2d(channels, channels, 1)), nn.BatchNorm2d(channels),
                     nn.ReLU(inplace=True)]  # BatchNorm's backward needs no output
        self.body = nn.Sequential(*body)
        self.last = spectral_norm(nn.Conv2d(channels, 1, 1))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # The release's init; with parametrizations the raw weight is ``original``.
                weight = module.parametrizations.weight.original
                nn.init.xavier_normal_(weight, 0.1)
                module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.normal_(1.0, 0.02)
                module.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.last(self.body(self.first(x))))


def lsgan_loss(prediction: torch.Tensor, real: bool) -> torch.Tensor:
    """LSGAN: mean squared distance of the discriminator map to 1 (real) or 0 (fake)."""
    target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def shave_to(big: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
    """Crop ``big`` (..., H, W) symmetrically to ``small``'s height and width."""
    dh, dw = big.shape[-2] - small.shape[-2], big.shape[-1] - small.shape[-1]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f"cannot shave {tuple(big.shape)} to {tuple(small.shape)}")
    return big[..., dh // 2:big.shape[-2] - dh // 2, dw // 2:big.shape[-1] - dw // 2]


def bicubic_x2_kernel(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 8x8 MATLAB x2 bicubic (antialiased) downscaling kernel, KernelGAN's prior."""
    _, weights = resize_weights(32, 16, 0.5)
    row = weights[8]
    row = row[row != 0]  # the interior row has 8 non-zero taps (cubic of width 8)
    assert row.numel() == 8
    return torch.outer(row, row).to(dtype)


def boundary_mask(size: int = 13, penalty: float = 30.0) -> torch.Tensor:
    """KernelGAN's boundary penalty: ``penalty * (1 - g/max g)``, zero in the middle.

    g is a Gaussian of width ``size``; the zeroed centre is ``size - 2*margin`` wide with
    ``margin = (size - (size//2 + size%2))//2 - 1`` (9x9 for 13x13).
    """
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(offsets**2) / (2 * size**2))
    mask = 1 - torch.outer(g, g) / (g.max() ** 2)
    margin = (size - (size // 2 + size % 2)) // 2 - 1
    mask[margin:size - margin, margin:size - margin] = 0
    return (penalty * mask).float()


@dataclass
class KernelPriors:
    """The kernel priors with their (scheduled) weights; call to get the weighted sum.

    After a call, :attr:`terms` holds the unweighted values (floats) for logs and
    :attr:`bicubic_value` the bicubic loss that drives :class:`PriorSchedule`.
    """

    kernel_size: int = 13
    bicubic: float = 5.0
    sum_to_one: float = 0.5
    boundaries: float = 0.5
    centralized: float = 0.0
    sparse: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    bicubic_value: float = math.inf

    def __post_init__(self) -> None:
        self._mask = boundary_mask(self.kernel_size)
        self._bicubic = bicubic_x2_kernel()
        # KernelGAN's wanted centre of mass: size//2 + 0.5*(2 - size%2), i.e. 6.5 for 13:
        # where the bicubic prior's half-pixel (MATLAB-grid) alignment puts it.
        self.wanted_center = self.kernel_size // 2 + 0.5 * (2 - self.kernel_size % 2)

    def __call__(self, kernel: torch.Tensor, g_input: torch.Tensor,
                 g_output: torch.Tensor) -> torch.Tensor:
        bic = self._bicubic.to(g_input)
        target = F.conv2d(_per_channel(g_input), bic[None, None], stride=2, padding=3)
        target = target.reshape(g_input.shape[0], g_input.shape[1], *target.shape[-2:])
        loss_bicubic = F.mse_loss(g_output, shave_to(target, g_output))
        loss_sum = (1 - kernel.sum()).abs()
        loss_boundaries = (kernel * self._mask.to(kernel)).abs().mean()
        com = center_of_mass(kernel)
        loss_center = ((com - self.wanted_center) ** 2).mean()
        loss_sparse = (kernel.abs() ** 0.2).mean()
        self.bicubic_value = float(loss_bicubic.detach())
        self.terms = {"bicubic": self.bicubic_value, "sum_to_one": float(loss_sum.detach()),
                      "boundaries": float(loss_boundaries.detach()),
                      "centralized": float(loss_center.detach()),
                      "sparse": float(loss_sparse.detach())}
        total = (self.bicubic * loss_bicubic + self.sum_to_one * loss_sum
                 + self.boundaries * loss_boundaries)
        # Terms with weight 0 are left out of the graph (sparsity's gradient at 0 is inf).
        if self.centralized:
            total = total + self.centralized * loss_center
        if self.sparse:
            total = total + self.sparse * loss_sparse
        return total


@dataclass
class PriorSchedule:
    """KernelGAN's ``Learner``: learning-rate steps and the prior-weight schedule."""

    lr_step: int = 750
    lr_divisor: float = 10.0  # KernelGAN; DualSR divides by 4
    update_every: int = 200
    bicubic_threshold: float = 0.4
    bicubic_decay: float = 100.0
    bicubic_min: float = 5e-6
    centralized_end: float = 1.0
    sparse_end: float = 5.0
    below_count: int = 0
    similar_to_bicubic: bool = False
    constraints_added: bool = False

    def update(self, iteration: int, priors: KernelPriors,
               optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Call after iteration ``iteration`` (0-based), as the releases do."""
        if iteration == 0:
            return
        if iteration % self.lr_step == 0:
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] /= self.lr_divisor
        if not self.similar_to_bicubic:
            # Three consecutive iterations below the threshold start the decay.
            if priors.bicubic_value < self.bicubic_threshold:
                if self.below_count >= 2:
                    self.similar_to_bicubic = True
                else:
                    self.below_count += 1
            else:
                self.below_count = 0
        elif iteration % self.update_every == 0 and priors.bicubic > self.bicubic_min:
            priors.bicubic = max(priors.bicubic / self.bicubic_decay, self.bicubic_min)
            if not self.constraints_added and priors.bicubic < 5e-3:
                priors.centralized = self.centralized_end
                priors.sparse = self.sparse_end
                self.constraints_added = True


def _gray(image: torch.Tensor) -> torch.Tensor:
    if image.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype)
        return (image * weights[:, None, None]).sum(0)
    return image.mean(0)


def _box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Means of every ``size`` x ``size`` window of 2-D ``x`` (valid positions), by a
    summed-area table: O(pixels) whatever the window (avg_pool2d's cost grows with its
    area: 3.3 s for 64-pixel windows on a DIV2KRK-sized image)."""
    table = F.pad(x.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sums = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
            + table[:-size, :-size])
    return sums / (size * size)


def crop_probabilities(image: torch.Tensor, crop: int, border: int = BORDER) -> torch.Tensor:
    """The probability of each (top - border, left - border) corner of a ``crop``-sized crop
    of (C, H, W) ``image``: a float64 (rows, cols) map summing to 1.

    Proportional to the mean gradient magnitude (central differences of the grey image,
    clipped at its 97th percentile as KernelGAN does) over the crop's central ``crop/2``
    square; crops never touch the ``border``-pixel frame; top and left are even (DualSR) so
    x2 crops stay on the same sampling grid. A flat image gives uniform crops.
    """
    height, width = image.shape[-2:]
    rows, cols = height - 2 * border - crop + 1, width - 2 * border - crop + 1
    if rows < 1 or cols < 1:
        raise ValueError(f"image {height}x{width} too small for {crop}-pixel crops with a "
                         f"{border}-pixel border")
    gy, gx = torch.gradient(_gray(image.double()))
    magnitude = torch.sqrt(gx**2 + gy**2)
    magnitude = magnitude.clamp(max=float(torch.quantile(magnitude.flatten(), 0.97)))
    inner = magnitude[border:height - border, border:width - border]
    half = max(crop // 2, 1)
    offset = (crop - half) // 2
    window = _box_mean(inner, half)
    score = window[offset:offset + rows, offset:offset + cols].clone()
    score[1::2, :] = 0  # even tops and lefts only (relative to the border)
    score[:, 1::2] = 0
    if not bool((score > 0).any()):
        score = torch.zeros_like(score)
        score[::2, ::2] = 1
    return score / score.sum()


def crop_sampler(image: torch.Tensor, crop: int, generator: torch.Generator,
                 border: int = BORDER) -> Callable[[], tuple[int, int]]:
    """A function returning random (top, left) of ``crop``-sized crops of (C, H, W) ``image``,
    drawn from :func:`crop_probabilities` with ``generator``."""
    probabilities = crop_probabilities(image, crop, border)
    cols = probabilities.shape[1]
    # Inverse-CDF sampling: the cumulative sum once, then a binary search per draw. The same
    # distribution as torch.multinomial, which draws one exponential variate per candidate on
    # every call (19-35 ms for a DIV2KRK-sized LR image, four calls per DualSR iteration).
    cumulative = probabilities.flatten().cumsum(0)
    total = cumulative[-1]
    # The last possible corner: guards u * total rounding up to total.
    last = int(torch.nonzero(probabilities.flatten()).max())

    def sample() -> tuple[int, int]:
        u = torch.rand(1, generator=generator, dtype=torch.float64) * total
        index = min(int(torch.searchsorted(cumulative, u, right=True)), last)
        top, left = divmod(index, cols)
        return top + border, left + border

    return sample


def post_process_kernel(kernel: torch.Tensor, n: int = N_FILTERING) -> torch.Tensor:
    """KernelGAN's post-processing of an x2 kernel (see the module docstring).

    Subtract 0.75 × the (n+1)-th largest tap, clip at 0, normalise to sum 1, pad by
    ``ceil(max|shift|) + 1`` so the shift loses nothing, move the centre of mass to
    :data:`GRID_OFFSET` (half a pixel) down-right of the middle tap, renormalise. Returns a
    float64 (k + 2p, k + 2p) kernel.
    """
    k = kernel.detach().double()
    ordered = torch.sort(k.flatten()).values
    threshold = 0.75 * ordered[-min(n, ordered.numel() - 1) - 1]
    k = (k - threshold).clamp(min=0)
    k = k / k.sum()
    shift = center_of_mass(k) - (k.shape[-1] - 1) / 2 - GRID_OFFSET
    pad = math.ceil(float(shift.abs().max())) + 1
    k = F.pad(k, (pad, pad, pad, pad))
    return recentre_kernel(k[None], GRID_OFFSET)[0]


def sample_crops(image: torch.Tensor, sampler: Callable[[], tuple[int, int]], crop: int,
                 batch: int) -> torch.Tensor:
    """A (batch, C, crop, crop) stack of crops of (C, H, W) ``image`` at ``sampler``'s corners
    (:func:`crop_sampler`)."""
    crops = []
    for _ in range(batch):
        top, left = sampler()
        crops.append(image[:, top:top + crop, left:left + crop])
    return torch.stack(crops)


def _usable_crop(image: torch.Tensor, wanted: int, border: int) -> int:
    """The largest even crop <= ``wanted`` that fits inside the border (at least 26)."""
    limit = min(image.shape[-2:]) - 2 * border
    crop = min(wanted, limit) // 2 * 2
    if crop < 26:
        raise ValueError(f"image {tuple(image.shape[-2:])} is too small: need at least "
                         f"{26 + 2 * border} pixels per side")
    return crop


def estimate_kernel(
    image: torch.Tensor,
    scale: int = 2,
    iterations: int = 3000,
    seed: int = 0,
    *,
    crop: int = 64,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> torch.Tensor:
    """KernelGAN: the blur kernel of ``image`` (C, H, W) in [0, 1] for x2 or x4 downscaling.

    Trains G_DN (input crops of ``crop`` pixels, batch 1) against D_DN (real crops of G_DN's
    output size; its fakes are the updated G_DN's output plus N(0, 1/255) noise, as
    KernelGAN's ``train_d``) with the priors and KernelGAN's schedule (Adam lr 2e-4, betas
    (0.5, 0.999), lr / 10 every 750 iterations), then post-processes
    (:func:`post_process_kernel`). x4
    returns :func:`dynsr.degrade.analytic_x4_kernel` of the x2 kernel. Seeded: the same
    inputs give the same kernel on the same machine; the caller's global RNG is untouched.
    ``progress(iteration, losses)`` is called after every iteration.
    """
    if scale not in (2, 4):
        raise ValueError(f"kernel estimation supports scale 2 or 4, got {scale!r}")
    if image.dim() != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
    image = image.float()
    crop = _usable_crop(image, crop, BORDER)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        g_dn = DeepLinearGenerator()
        d_dn = PatchDiscriminator(in_channels=image.shape[0])
        priors = KernelPriors(kernel_size=g_dn.kernel_size)
        schedule = PriorSchedule()
        opt_g = torch.optim.Adam(g_dn.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d_dn.parameters(), lr=2e-4, betas=(0.5, 0.999))
        g_sampler = crop_sampler(image, crop, gen)
        d_crop = (crop - g_dn.kernel_size) // 2 + 1
        d_sampler = crop_sampler(image, d_crop, gen)
        for iteration in range(iterations):
            g_input = sample_crops(image, g_sampler, crop, 1)
            real = sample_crops(image, d_sampler, d_crop, 1)
            # Generator step (D's parameters get no gradient from it).
            d_dn.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            kernel = g_dn.kernel()
            fake = g_dn.forward_composed(g_input, kernel)
            loss_g = lsgan_loss(d_dn(fake), True)
            loss_total = loss_g + priors(kernel, g_input, fake)
            loss_total.backward()
            opt_g.step()
            # Discriminator step. KernelGAN re-runs the updated G_DN and adds N(0, 1/255)
            # noise to its output before D sees it.
            d_dn.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = g_dn(g_input)
                fake = fake + torch.randn_like(fake) / 255.0
            loss_d = 0.5 * (lsgan_loss(d_dn(real), True) + lsgan_loss(d_dn(fake), False))
            loss_d.backward()
            opt_d.step()
            schedule.update(iteration, priors, (opt_g, opt_d))
            if progress is not None:
                progress(iteration, {"gan": float(loss_g.detach()), "d": float(loss_d.detach()),
                                     **{f"prior_{k}": v for k, v in priors.terms.items()}})
        with torch.no_grad():
            kernel = post_process_kernel(g_dn.kernel())
    return analytic_x4_kernel(kernel) if scale == 4 else kernel
