"""DualSR (Emad, Peemen, Corporaal, WACV 2021): zero-shot blind x2 SR of one image.

An upsampler G_UP and a KernelGAN downsampler G_DN (with its discriminator D_DN,
:mod:`dynsr.zeroshot.kernelgan`) are trained from scratch on crops of the input image and
improve each other through cycle losses. Facts from the paper and the authors' release
(memad73/DualSR: ``DualSR.py``, ``networks.py``, ``loss.py``, ``learner.py``, ``data.py``,
``options.py``, ``torch_sobel.py``), and dynsr's choices:

* Crops: "HR-like" y of 128 and "LR-like" x of 64 pixels, batch 2 each, even top-left,
  drawn with probability proportional to local gradient magnitude, never within 10 pixels
  of the border (:func:`dynsr.zeroshot.kernelgan.crop_sampler`). The release samples y by
  the gradients of the bicubic-downscaled image and clips gradients per axis too; dynsr
  uses the image's own gradient magnitude for both. On images too small for 128-pixel
  crops both sizes shrink (y the largest even size that fits, x = y/2).
* G_UP: bilinear x2 (edge pixels replicated; the release's 9/16, 3/16, 3/16, 1/16 phase
  filters are ``F.interpolate(..., 'bilinear', align_corners=False)``), then 8 conv 3x3
  (64 ch, zero padding, ReLU between, last linear) added to the bilinear image. Kaiming
  normal (fan-in) init, zero biases.
* Generator loss: LSGAN(D(G_DN(y)), 1) + 5 · L1(G_DN(G_UP(x)), x shaved) + 5 ·
  L1(G_UP(G_DN(y)), y shaved) + 2 · L1(mask · G_UP(x), mask · bicubic(x)) + 2 · priors.
  The factor 2 on the priors is the release's ``lambda_regularization`` (the paper does
  not state it). Mask = 1 − clamp(|Sobel(bicubic(x))|, 0, 1) per channel, unnormalised
  3x3 Sobel with zero padding (kornia's, as in the release), bicubic = MATLAB imresize.
* D loss: 0.5 · (LSGAN(D(x shaved to G_DN(y)'s size), 1) + LSGAN(D(G_DN(y)), 0)).
* Order per iteration (release): G step (D frozen), D step, then the schedule: G_UP lr 1e-3
  halved every 750 iterations (a StepLR stepped every iteration); G_DN and D lr 2e-4
  divided by 4 at 750, 1500, 2250; the KernelGAN prior schedule. Adam betas (0.5, 0.999).
* Output: G_UP on the whole image, clamped to [0, 1]; the kernel is G_DN's composed kernel
  post-processed as KernelGAN does (:func:`dynsr.zeroshot.kernelgan.post_process_kernel`;
  the release saves it raw). x4 = two x2 runs (the second on the first's output, seed + 1);
  the x4 kernel is the analytic composition of the first run's x2 kernel.
* Repeatable: one seed fixes every initialisation and crop (the caller's global RNG is
  saved and restored); the same machine and thread count give bit-identical results.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.blind import learned_direct_kernel
from dynsr.degrade import analytic_x4_kernel, pad_kernel
from dynsr.ops.resize import imresize
from dynsr.zeroshot.kernelgan import (
    BORDER,
    DeepLinearGenerator,
    KernelPriors,
    PatchDiscriminator,
    PriorSchedule,
    crop_sampler,
    estimate_kernel,
    lsgan_loss,
    post_process_kernel,
    sample_crops,
    shave_to,
)

__all__ = ["DualSRConfig", "Upsampler", "format_progress", "g_dn_sized",
           "masked_interpolation_loss", "sobel_magnitude", "zeroshot"]

ProgressFn = Callable[[int, int, dict[str, float]], None]
#: ``checkpoint(iteration, upscale)``: called after every iteration; ``upscale()`` gives G_UP's
#: current SR of the whole image (for PSNR-versus-time curves).
CheckpointFn = Callable[[int, Callable[[], torch.Tensor]], None]


@dataclass(frozen=True)
class DualSRConfig:
    """Hyper-parameters (defaults: the paper and the release, see the module docstring)."""

    iterations: int = 3000
    hr_crop: int = 128
    batch: int = 2
    lambda_cycle: float = 5.0
    lambda_interp: float = 2.0
    lambda_priors: float = 2.0
    lr_up: float = 1e-3
    lr_dn: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    lr_step: int | None = None  # None: iterations // 4 (750 for the paper's 3000)
    up_lr_gamma: float = 0.5
    dn_lr_divisor: float = 4.0
    # Ablations (the paper's Table 2): drop a loss term.
    interp_loss: bool = True
    forward_cycle: bool = True
    backward_cycle: bool = True
    # Speed: bf16 autocast for G_UP and D_DN (G_DN's kernel, the priors and every loss stay
    # float32) and channels_last for their convolutions.
    precision: str = "fp32"
    channels_last: bool = False
    # False: G_DN layer by layer (the straightforward way; same values, for benchmarks).
    composed_g_dn: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.lr_step is not None and self.lr_step < 1:
            raise ValueError(f"lr_step must be a positive number of iterations, got "
                             f"{self.lr_step}")

    @property
    def step(self) -> int:
        """Iterations between learning-rate steps (the schedule scales with the budget)."""
        return self.lr_step if self.lr_step is not None else max(1, self.iterations // 4)


class Upsampler(nn.Module):
    """G_UP: bilinear x2 (replicated edges) + an 8-layer residual CNN."""

    def __init__(self, channels: int = 3, features: int = 64, layers: int = 8) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        for index in range(layers):
            c_in = channels if index == 0 else features
            c_out = channels if index == layers - 1 else features
            convs.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if index < layers - 1:
                # In place: the same values and gradients without a fresh activation-sized
                # tensor (out-of-place ReLU forward and backward: a fifth of the profile with a
                # fixed G_DN).
                convs.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*convs)
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # align_corners=False clamps at the edges: the release's replicate-padded bilinear.
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return up + self.body(up)


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Per-channel unnormalised 3x3 Sobel gradient magnitude, zero padding, (B, C, H, W)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype,
                      device=x.device)
    kernels = torch.stack([kx, kx.t()])[:, None].repeat(x.shape[1], 1, 1, 1)
    grads = F.conv2d(x, kernels, padding=1, groups=x.shape[1])
    gx, gy = grads[:, 0::2], grads[:, 1::2]
    return torch.sqrt(gx * gx + gy * gy)


def masked_interpolation_loss(sr: torch.Tensor, bicubic: torch.Tensor) -> torch.Tensor:
    """L1 between G_UP(x) and bicubic(x), weighted by 1 − clamp(Sobel(bicubic(x)), 0, 1)."""
    mask = 1 - sobel_magnitude(bicubic).clamp(0, 1)
    return F.l1_loss(sr * mask, bicubic * mask)


def _hr_crop_size(image: torch.Tensor, wanted: int) -> int:
    # Even, fits inside the border, and large enough for G_DN (13) and D (7) on x = y/2.
    size = min(wanted, min(image.shape[-2:]) - 2 * BORDER) // 2 * 2
    if size < 32:
        raise ValueError(f"image {image.shape[-2]}x{image.shape[-1]} is too small for DualSR "
                         f"(needs at least {32 + 2 * BORDER} pixels per side)")
    return size


def _format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _networks(channels: int, config: DualSRConfig, layout: torch.memory_format,
              ) -> tuple[Upsampler, DeepLinearGenerator, PatchDiscriminator, KernelPriors]:
    """G_UP, G_DN, D_DN and the kernel priors, initialised in this order from the seeded
    global generator (the order keeps a seed's run the same)."""
    g_up = Upsampler(channels).to(memory_format=layout)
    g_dn = DeepLinearGenerator(composed=config.composed_g_dn)
    d_dn = PatchDiscriminator(in_channels=channels).to(memory_format=layout)
    return g_up, g_dn, d_dn, KernelPriors(kernel_size=g_dn.kernel_size)


def _optimizers(config: DualSRConfig, *nets: nn.Module) -> tuple[torch.optim.Adam, ...]:
    """Adam for G_UP, G_DN and D_DN with their learning rates (the paper's betas)."""
    betas = (config.beta1, 0.999)
    return tuple(torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
                 for net, lr in zip(nets, (config.lr_up, config.lr_dn, config.lr_d),
                                    strict=True))


def _discriminator_step(d_dn: nn.Module, opt_d: torch.optim.Optimizer,
                        discriminate: Callable[[torch.Tensor], torch.Tensor],
                        real_lr: torch.Tensor, fake_lr: torch.Tensor) -> torch.Tensor:
    """D_DN's step: real x crops (shaved to G_DN's output size) against G_DN(y); its loss."""
    d_dn.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    loss_d = 0.5 * (lsgan_loss(discriminate(shave_to(real_lr, fake_lr)), True)
                    + lsgan_loss(discriminate(fake_lr.detach()), False))
    loss_d.backward()
    opt_d.step()
    return loss_d


def _log_entry(stage: int, iteration: int, kernel_priors: KernelPriors, start: float,
               **losses: torch.Tensor) -> dict[str, float]:
    """One row of DualSR's loss log: the losses, the kernel priors' terms, the seconds."""
    return {"stage": float(stage), "iteration": float(iteration),
            **{name: float(value.detach()) for name, value in losses.items()},
            **{f"prior_{name}": value for name, value in kernel_priors.terms.items()},
            "lambda_bicubic": kernel_priors.bicubic,
            "seconds": time.perf_counter() - start}


def _dualsr_x2(image: torch.Tensor, config: DualSRConfig, seed: int,
               progress: ProgressFn | None, stage: int,
               known_kernel: torch.Tensor | None = None,
               checkpoint: CheckpointFn | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    channels = image.shape[0]
    hr_size = _hr_crop_size(image, config.hr_crop)
    lr_size = hr_size // 2
    log: list[dict[str, float]] = []
    fast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        g_up, g_dn, d_dn, priors = _networks(channels, config, layout)
        schedule = PriorSchedule(lr_step=config.step, lr_divisor=config.dn_lr_divisor)
        opt_up, opt_dn, opt_d = _optimizers(config, g_up, g_dn, d_dn)
        up_scheduler = torch.optim.lr_scheduler.StepLR(opt_up, config.step,
                                                       config.up_lr_gamma)
        hr_sampler = crop_sampler(image, hr_size, gen)
        lr_sampler = crop_sampler(image, lr_size, gen)
        if known_kernel is not None:
            # "GT kernel + DualSR": G_DN is that kernel, nothing to learn or discriminate.
            fixed = _as_g_dn_kernel(known_kernel, g_dn.kernel_size)

        def up(x: torch.Tensor) -> torch.Tensor:
            with fast:
                return g_up(x.contiguous(memory_format=layout)).float()

        def down(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
            if known_kernel is None and not config.composed_g_dn:
                return g_dn.forward_layers(x)
            return g_dn.forward_composed(x, kernel)

        def discriminate(x: torch.Tensor) -> torch.Tensor:
            with fast:
                return d_dn(x.contiguous(memory_format=layout)).float()

        start = time.perf_counter()
        zero = torch.zeros(())
        for iteration in range(config.iterations):
            real_hr = sample_crops(image, hr_sampler, hr_size, config.batch)
            real_lr = sample_crops(image, lr_sampler, lr_size, config.batch)

            # Generators (G_UP and G_DN together); D gets no gradient from this step.
            d_dn.requires_grad_(False)
            opt_up.zero_grad(set_to_none=True)
            opt_dn.zero_grad(set_to_none=True)
            kernel = g_dn.kernel() if known_kernel is None else fixed  # composed once
            fake_hr = up(real_lr)
            fake_lr = down(real_hr, kernel)
            loss_gan = loss_priors = loss_fwd = loss_bwd = loss_interp = zero
            if known_kernel is None:
                loss_gan = lsgan_loss(discriminate(fake_lr), True)
                loss_priors = priors(kernel, real_hr, fake_lr)
            if config.forward_cycle:
                rec_lr = down(fake_hr, kernel)
                loss_fwd = F.l1_loss(rec_lr, shave_to(real_lr, rec_lr))
            if config.backward_cycle:
                rec_hr = up(fake_lr)
                loss_bwd = F.l1_loss(rec_hr, shave_to(real_hr, rec_hr))
            if config.interp_loss:
                loss_interp = masked_interpolation_loss(fake_hr, imresize(real_lr, 2))
            total = (loss_gan + config.lambda_cycle * (loss_fwd + loss_bwd)
                     + config.lambda_interp * loss_interp + config.lambda_priors * loss_priors)
            total.backward()
            opt_up.step()
            loss_d = zero
            if known_kernel is None:
                opt_dn.step()
                loss_d = _discriminator_step(d_dn, opt_d, discriminate, real_lr, fake_lr)

            up_scheduler.step()
            schedule.update(iteration, priors, (opt_dn, opt_d))
            entry = _log_entry(stage, iteration, priors, start, gan=loss_gan,
                               cycle_forward=loss_fwd, cycle_backward=loss_bwd,
                               interp=loss_interp, priors=loss_priors, total=total, d=loss_d)
            log.append(entry)
            if progress is not None:
                progress(iteration, config.iterations, entry)
            if checkpoint is not None:
                checkpoint(iteration, lambda: _upscale_whole(up, image))
        sr = _upscale_whole(up, image)
        with torch.no_grad():
            kernel = post_process_kernel(g_dn.kernel()) if known_kernel is None \
                else known_kernel.to(torch.float64)
    return sr, kernel, log


def _upscale_whole(up: Callable[[torch.Tensor], torch.Tensor],
                   image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return up(image[None])[0].clamp(0, 1)


def _as_g_dn_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """A known (k, k) kernel as G_DN's composed (size, size) kernel: zero-padded around its
    middle (k odd, k <= size), float32, no gradient."""
    k = kernel.shape[-1]
    if kernel.dim() != 2 or kernel.shape[0] != k or k % 2 == 0 or k > size:
        raise ValueError(f"a known kernel must be square, odd and at most {size}x{size}, got "
                         f"{tuple(kernel.shape)}")
    return pad_kernel(kernel.detach().float(), size)


def g_dn_sized(kernel: torch.Tensor, size: int = 13) -> torch.Tensor:
    """KernelGAN's post-processed kernel (padded for its centring shift) cut to G_DN's
    ``size`` x ``size`` middle and renormalised, so DualSR's G_DN can be fixed to it."""
    k = kernel.shape[-1]
    if k > size:
        cut = (k - size) // 2
        kernel = kernel[cut:cut + size, cut:cut + size]
    return kernel / kernel.sum()


def zeroshot(
    image: torch.Tensor,
    scale: int = 2,
    iterations: int = 3000,
    seed: int = 0,
    progress: ProgressFn | None = None,
    *,
    config: DualSRConfig | None = None,
    known_kernel: torch.Tensor | None = None,
    kernelgan_iterations: int | None = None,
    learned_kernel: bool = False,
    checkpoint: CheckpointFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, float]]]:
    """DualSR on one (C, H, W) image in [0, 1]: ``(sr, kernel, log)``.

    ``sr`` is (C, s·H, s·W) in [0, 1]; ``kernel`` the estimated blur kernel (float64,
    correlation orientation, centre of mass (s-1)/2 pixels down-right of the middle tap:
    :func:`dynsr.degrade.blur` then :func:`dynsr.degrade.subsample` with it models the
    degradation onto MATLAB bicubic's LR grid, as DIV2KRK's kernels); ``log`` one dict of
    losses per iteration (with ``stage`` 1 or 2 at x4). ``progress(iteration, iterations,
    losses)`` is called after every iteration. ``config`` overrides the hyper-parameters
    (its ``iterations`` is replaced by ``iterations``).

    ``known_kernel``: the x2 blur kernel (odd, at most 13x13) when it is known: G_DN is fixed
    to it and D_DN, the GAN loss and the kernel priors are dropped (the paper's "GT kernel +
    DualSR"); at x4 both x2 stages use it (DIV2KRK's x4 applies the x2 kernel twice).
    ``kernelgan_iterations``: two steps instead of joint training (not the paper's DualSR:
    the analogue of its "KernelGAN + ZSSR" row): KernelGAN (:func:`estimate_kernel`, that
    many iterations, the same seed) estimates the x2 kernel first, then G_UP trains with
    G_DN fixed to it as for ``known_kernel``. On dynsr's DIV2KRK-style Set14 table, KernelGAN's
    3000 iterations and then G_UP's 1000 beat joint DualSR at 1000 by 0.97 dB and at the
    paper's 3000 by 0.18 dB (docs/zeroshot.md). ``progress`` then sees
    KernelGAN's iterations first, as stage 0 (its ``gan`` and ``d`` losses; the other
    terms 0).
    ``learned_kernel``: two steps as well, the kernel read first by dynsr's learned
    degradation estimator in a fraction of a second
    (:func:`dynsr.blind.learned_direct_kernel`, its x2 weights; at x4 both stages use it).
    ``checkpoint(iteration, upscale)`` is called after every iteration of the (first) x2
    stage; ``upscale()`` returns the current SR of the whole image.
    """
    if scale not in (2, 4):
        raise ValueError(f"DualSR supports scale 2 or 4, got {scale!r}")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with 1 or 3 channels, got "
                         f"{tuple(image.shape)}")
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    if sum((known_kernel is not None, kernelgan_iterations is not None, learned_kernel)) > 1:
        raise ValueError("known_kernel, kernelgan_iterations and learned_kernel exclude each "
                         "other")
    if learned_kernel:
        known_kernel = g_dn_sized(learned_direct_kernel(image.float(), 2))
    if kernelgan_iterations is not None:
        if kernelgan_iterations < 1:
            raise ValueError(f"kernelgan_iterations must be positive, got "
                             f"{kernelgan_iterations}")
        known_kernel = g_dn_sized(estimate_kernel(
            image.float(), 2, kernelgan_iterations, seed,
            progress=None if progress is None else _kernelgan_progress(progress,
                                                                        kernelgan_iterations)))
    base = config or DualSRConfig()
    config = DualSRConfig(**{**base.__dict__, "iterations": iterations})
    image = image.float()
    sr, kernel, log = _dualsr_x2(image, config, seed, progress, 1, known_kernel, checkpoint)
    if scale == 4:
        # Second x2 step on the first one's output, with fresh networks.
        sr, _, log2 = _dualsr_x2(sr, config, seed + 1, progress, 2, known_kernel)
        log += log2
        kernel = analytic_x4_kernel(kernel)
    if not all(math.isfinite(v) for entry in log for v in entry.values()):
        raise FloatingPointError("DualSR diverged: a loss is not finite")
    return sr, kernel, log


def _kernelgan_progress(progress: ProgressFn,
                        iterations: int) -> Callable[[int, dict[str, float]], None]:
    """KernelGAN's progress hook, reporting to a DualSR ``progress`` as stage 0."""
    start = time.perf_counter()

    def report(iteration: int, losses: dict[str, float]) -> None:
        progress(iteration, iterations, {
            "stage": 0.0, "iteration": float(iteration), "gan": losses["gan"],
            "cycle_forward": 0.0, "cycle_backward": 0.0, "interp": 0.0, "d": losses["d"],
            "seconds": time.perf_counter() - start})

    return report


def format_progress(iteration: int, iterations: int, losses: dict[str, float]) -> str:
    """One progress line: iteration, the main losses and the ETA."""
    done = iteration + 1
    eta = losses["seconds"] / done * (iterations - done)
    return (f"it {done}/{iterations} gan {losses['gan']:.4f} fwd {losses['cycle_forward']:.4f} "
            f"bwd {losses['cycle_backward']:.4f} interp {losses['interp']:.4f} "
            f"d {losses['d']:.4f} eta {_format_eta(eta)}")
