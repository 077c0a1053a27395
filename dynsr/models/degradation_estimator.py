"""A learned degradation estimator: UDVD's degradation map read off the LR image itself.

UDVD (Xu et al., "Unified Dynamic Convolutional Network for Super-Resolution with
Variational Degradations", CVPR 2020) is non-blind: it is told, per LR pixel, the blur as
the 15 PCA coefficients of its kernel and the noise level (Eq. 1 and Sec. 3.1, the SRMD
degradation map). Its paper notes that any estimator can be put in front of it; no release
of UDVD, SRMD, DualSR or DDet has one that is learned. This network is dynsr's: it predicts
the 16-channel map per LR pixel, with a confidence per pixel, so that

* a spatially invariant degradation (one camera blur, one noise level) is read as the
  confidence-weighted mean over the whole image (:meth:`DegradationEstimator.estimate` with
  ``smoothing=None``), and
* a spatially varying one (Table 3 of UDVD: width and noise rising across the image) as a
  confidence-weighted Gaussian smoothing of the per-pixel estimates (``smoothing=σ`` in LR
  pixels, normalised convolution).

Architecture (dynsr's, no paper defines it): the LR image minus 0.5, pixel-unshuffled by 4
(lossless: the fine-scale statistics that tell noise and blur apart stay in the channels)
→ conv 3×3 to C → N residual blocks (conv-ReLU-conv, C channels) → conv 3×3, added to the
first features → conv 3×3 + ReLU → conv 1×1 to 16 channels (the map standardised with the
training degradations' mean and spread per channel), and beside it a confidence head on the
detached features (conv 3×3 to C/2 + ReLU → conv 1×1 to two log-scales, kernel and noise)
→ bilinear ×4 back to the LR grid. Working at a quarter of the
resolution keeps a 512×512 LR under a second on two CPU cores; the receptive field is about
150 LR pixels. One network per scale (the bicubic filter that follows the blur differs).

Training (:mod:`dynsr.train.estimator`, ``configs/estimator/x*_cpu.yaml``): T91 + BSD200
patches degraded by :class:`dynsr.degrade.samplers.BlindSampler` (isotropic and anisotropic
Gaussians then bicubic, DIV2KRK-style kernels then subsampling, spatially blended kernels,
noise 0-75 and noise fields, half the LR patches rounded to 8 bit as files are). Loss: L1 of
the normalised means, plus the Laplace negative log-likelihood of the (detached) errors for
the log-scales, so the confidences are calibrated without pulling on the means.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynsr.degrade.degradation_map import PCA_DIM, kernel_from_code
from dynsr.degrade.noise_level import GREY_NOISE_GAIN
from dynsr.models.blocks import ResidualBlock, conv3x3
from dynsr.models.registry import register

__all__ = ["DegradationEstimate", "DegradationEstimator", "estimator_loss"]

MAP_CHANNELS = PCA_DIM + 1
# Difference-of-Gaussian bands between these smoothing widths (LR pixels) and the window
# (sigma, LR pixels) of their local energy: the hand-made part of the input (band_energies).
BAND_SIGMAS = (0.6, 1.2, 2.4, 4.8)
ENERGY_WINDOW = 3.0
# Floor of a channel's spread when standardising targets: the smallest code components vary
# by ~1e-3 and would otherwise dominate the loss with what is noise in kernel terms.
MIN_SPREAD = 0.01


class DegradationEstimate:
    """What the estimator read off one batch: the map UDVD takes and its confidence.

    ``dmap``: (B, 16, h, w) degradation map (15 code values, sigma/255), per pixel;
    ``log_scale``: (B, 2, h, w) log Laplace scales (kernel, noise) of the normalised errors.
    """

    def __init__(self, dmap: torch.Tensor, log_scale: torch.Tensor) -> None:
        self.dmap = dmap
        self.log_scale = log_scale

    @property
    def noise(self) -> torch.Tensor:
        """Noise sigma map (B, 1, h, w) on the 0..255 scale."""
        return self.dmap[:, PCA_DIM:] * 255.0

    @property
    def code(self) -> torch.Tensor:
        return self.dmap[:, :PCA_DIM]

    def kernel_at(self, row: int | None = None, col: int | None = None) -> torch.Tensor:
        """The 15×15 kernel (B, 15, 15) at one LR pixel, or the image's mean kernel (None)."""
        code = self.code.mean(dim=(-2, -1)) if row is None else self.code[:, :, row, col]
        return kernel_from_code(code.double()).float()


class DegradationEstimator(nn.Module):
    """LR image (B, 3, h, w) in [0, 1] → normalised map and log-scales (B, 18, h, w)."""

    def __init__(self, scale: int, channels: int = 64, num_blocks: int = 8,
                 stride: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.stride = stride
        self.head = conv3x3(3 * stride * stride + len(BAND_SIGMAS), channels)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.fuse = conv3x3(channels, channels)
        self.tail = nn.Sequential(conv3x3(channels, channels), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, MAP_CHANNELS, 1))
        # The confidences read the trunk's features without training them: sharing the
        # trunk, their likelihood term swamped the map's gradient (the blur was not learnt
        # in 2,000 iterations while the noise was).
        self.confidence = nn.Sequential(conv3x3(channels, channels // 2), nn.ReLU(inplace=True),
                                        nn.Conv2d(channels // 2, 2, 1))
        # The map is predicted standardised, (map - mean) / spread per channel, with the
        # statistics of the training degradations (set_target_statistics; stored with the
        # weights). Unstandardised, the output bias had to crawl to code values of ~1-10 at
        # Adam's step size, and for 2,000 iterations the estimate was the prior's median.
        self.register_buffer("map_mean", torch.zeros(MAP_CHANNELS))
        self.register_buffer("map_spread", torch.ones(MAP_CHANNELS))

    @property
    def min_size(self) -> int:
        """The smallest LR side the estimator reads (smaller images: too little to see)."""
        return 4 * self.stride

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.shape[1] == 1:
            lr = lr.expand(-1, 3, -1, -1)
        height, width = lr.shape[-2:]
        s = self.stride
        pad_h, pad_w = (-height) % s, (-width) % s
        x = lr - 0.5
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        bands = F.avg_pool2d(band_energies(x), s)
        features = self.head(torch.cat([F.pixel_unshuffle(x, s), bands], dim=1))
        features = features + self.fuse(self.body(features))
        out = torch.cat([self.tail(features), self.confidence(features.detach())], dim=1)
        out = F.interpolate(out, scale_factor=s, mode="bilinear", align_corners=False)
        return out[..., :height, :width]

    @torch.no_grad()
    def set_target_statistics(self, maps: torch.Tensor) -> None:
        """Standardise the outputs with the per-channel mean and spread (std, at least
        :data:`MIN_SPREAD` for the code channels) of training maps (N, 16, h, w)."""
        flat = maps.transpose(0, 1).reshape(MAP_CHANNELS, -1).double()
        self.map_mean.copy_(flat.mean(1))
        spread = flat.std(1)
        spread[:PCA_DIM] = spread[:PCA_DIM].clamp_min(MIN_SPREAD)
        self.map_spread.copy_(spread.clamp_min(1e-6))

    def standardise(self, dmap: torch.Tensor) -> torch.Tensor:
        """A degradation map (B, 16, h, w) in the network's output units."""
        return (dmap - self.map_mean[:, None, None]) / self.map_spread[:, None, None]

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output → (normalised map (B, 16, h, w), log-scales (B, 2, h, w))."""
        return out[:, :MAP_CHANNELS], out[:, MAP_CHANNELS:]

    @torch.no_grad()
    def estimate(self, lr: torch.Tensor, smoothing: float | None = None) -> DegradationEstimate:
        """The degradation map of ``lr`` (B, C, h, w): one map per image (``smoothing=None``,
        the confidence-weighted mean) or per pixel, confidence-weighted Gaussian smoothing of
        standard deviation ``smoothing`` LR pixels (0: the raw per-pixel estimates)."""
        if min(lr.shape[-2:]) < self.min_size:
            raise ValueError(f"image of {lr.shape[-2]}×{lr.shape[-1]} pixels is too small "
                             f"for the degradation estimator (needs {self.min_size} per side)")
        normalised, log_scale = self.split(self(lr.float()))
        dmap = normalised * self.map_spread[:, None, None] + self.map_mean[:, None, None]
        # Inverse-variance weights of a Laplace scale b: 1 / b² (per kernel / noise group).
        weights = torch.exp(-2.0 * log_scale.clamp(-10.0, 10.0))
        weights = torch.cat([weights[:, :1].expand(-1, PCA_DIM, -1, -1), weights[:, 1:]], 1)
        if smoothing is None:
            mean = (weights * dmap).sum(dim=(-2, -1)) / weights.sum(dim=(-2, -1))
            dmap = mean[:, :, None, None].expand_as(dmap).contiguous()
            log_scale = log_scale.mean(dim=(-2, -1), keepdim=True).expand_as(log_scale)
        elif smoothing > 0:
            dmap = _gaussian_smooth(weights * dmap, smoothing) / _gaussian_smooth(weights,
                                                                                   smoothing)
        noise = dmap[:, PCA_DIM:].clamp_min(0.0)
        if lr.shape[1] == 1:
            noise = noise / GREY_NOISE_GAIN  # read off three equal channels (GREY_NOISE_GAIN)
        return DegradationEstimate(torch.cat([dmap[:, :PCA_DIM], noise], dim=1), log_scale)


def _reflect_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, 1, H, W) with mirrored borders."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    taps = torch.exp(-0.5 * (taps / sigma) ** 2)
    taps = taps / taps.sum()
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=mode), taps.reshape(1, 1, -1, 1))
    return F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=mode), taps.reshape(1, 1, 1, -1))


def band_energies(x: torch.Tensor) -> torch.Tensor:
    """Log local energies (B, 4, H, W) of the grey image's difference-of-Gaussian bands at
    :data:`BAND_SIGMAS`: how much detail each scale holds around a pixel. Blur shows as the
    fine bands losing energy against the coarse ones, noise as the finest band gaining it;
    their differences are the classic blur and noise measures, which a ReLU network only
    slowly learns to form itself from raw pixels (a ratio of energies). The input's
    brightness offset does not matter (band-pass)."""
    grey = x.mean(1, keepdim=True).float()
    levels = [grey] + [_reflect_smooth(grey, sigma) for sigma in BAND_SIGMAS]
    bands = [fine - coarse for fine, coarse in zip(levels[:-1], levels[1:], strict=True)]
    energies = [torch.log(_reflect_smooth(band * band, ENERGY_WINDOW) + 1e-6) for band in bands]
    return torch.cat(energies, dim=1).to(x.dtype)


def _gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing with zero padding (the caller normalises by the smoothed
    weights, so the border needs no special rule)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    taps = torch.exp(-0.5 * (taps / sigma) ** 2)
    taps = taps / taps.sum()
    channels = x.shape[1]
    rows = taps.reshape(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = taps.reshape(1, 1, 1, -1).expand(channels, 1, 1, -1)
    x = F.conv2d(x, rows, padding=(radius, 0), groups=channels)
    return F.conv2d(x, cols, padding=(0, radius), groups=channels)


def estimator_loss(model: DegradationEstimator, out: torch.Tensor,
                   dmap: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of the normalised map (kernel and noise weighted alike), plus the Laplace negative
    log-likelihood of the detached errors for the two log-scales (per pixel: kernel error
    summed over the 15 code values,
    noise error). Returns the loss and its parts (code L1, noise L1 in sigma units)."""
    normalised, log_scale = model.split(out)
    target = model.standardise(dmap)
    error = (normalised - target).abs()
    # The kernel (15 values) and the noise (1) weigh alike: a plain mean over the 16
    # channels gave the noise a sixteenth of the gradient, and it lagged far behind.
    l1 = error[:, :PCA_DIM].mean() + error[:, PCA_DIM:].mean()
    kernel_error = error[:, :PCA_DIM].sum(1, keepdim=True).detach()
    noise_error = error[:, PCA_DIM:].detach()
    b_kernel, b_noise = log_scale[:, :1], log_scale[:, 1:]
    nll = (kernel_error * torch.exp(-b_kernel) + PCA_DIM * b_kernel
           + noise_error * torch.exp(-b_noise) + b_noise).mean() / MAP_CHANNELS
    error = error.detach()
    spread = model.map_spread[:, None, None]
    parts = {"code_l1": float((error[:, :PCA_DIM] * spread[:PCA_DIM]).mean()),
             "sigma_l1": float((error[:, PCA_DIM:] * spread[PCA_DIM:]).mean()) * 255.0}
    return l1 + nll, parts


@register("degradation-estimator", scales=(2, 3, 4), task="estimate-degradation",
          summary="learned blind degradation estimator for UDVD (blur code + noise per pixel)",
          paper="dynsr's own; UDVD (Xu et al., CVPR 2020) Sec. 3.1 defines the map it reads")
def degradation_estimator(scale: int, **config) -> nn.Module:
    return DegradationEstimator(scale, **config)
