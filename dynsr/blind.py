"""Blind SR with a non-blind model: read each LR image's degradation, then tell UDVD.

UDVD (and SRMD) must be told the blur and the noise that made the LR image; its paper notes
that any degradation estimator can be put in front of it. dynsr offers two:

* ``"learned"`` (what ``"auto"``, the default, picks wherever its weights ship):
  :class:`dynsr.models.degradation_estimator.DegradationEstimator` with its shipped weights
  reads UDVD's degradation map off the image in a fraction of a
  second; per pixel, aggregated over the whole image (``smoothing=None``) or smoothed locally
  (``smoothing=σ`` LR pixels) for blur and noise that vary across the image;
* ``"kernelgan"``: KernelGAN trained on the image itself (thousands of iterations, minutes
  per image) and the patch-PCA noise level (:mod:`dynsr.zeroshot.blind`); one kernel and one
  noise level per image, x2 and x4 only.

:func:`estimate_blind_degradation` returns a :class:`BlindDegradation`, whose
:meth:`~BlindDegradation.conditions` are UDVD's ``blur=`` / ``noise=`` keyword arguments,
and :func:`save_degradation` writes what was assumed as pictures a person can check.

The learned estimate can be corrected by the network it is told to (``correction`` steps,
the estimator and UDVD alternating, as IKC and DAN do, with nothing more to train): UDVD
upscales the LR with the estimate; that SR is degraded again with exactly what UDVD was
told, so the truth of this second LR is known; the estimator reads it, and its error there
(same content, same kind of degradation) is taken as its bias on the real LR and
subtracted from the first reading (:func:`correct_degradation`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dynsr.degrade.degradation_map import (
    PCA_DIM,
    PCA_KERNEL_SIZE,
    direct_kernel_from_udvd,
    kernel_code,
    kernel_from_code,
)
from dynsr.degrade.kernels import isotropic_gaussian
from dynsr.degrade.pipeline import add_noise, bicubic_downsample, separable_blur
from dynsr.io import atomic_write_json, write_image
from dynsr.models import create
from dynsr.models.degradation_estimator import DegradationEstimator
from dynsr.upscale.weights import (
    WeightsError,
    default_weights_dir,
    find_weights,
    load_state_dict,
    weights_model_config,
)

__all__ = [
    "BLIND_CORRECTION",
    "BLIND_KERNEL",
    "BLIND_METHODS",
    "BLIND_SMOOTHING",
    "default_correction",
    "ESTIMATOR_NAME",
    "BlindDegradation",
    "Restorer",
    "correct_degradation",
    "estimate_blind_degradation",
    "kernel_width",
    "learned_direct_kernel",
    "load_estimator",
    "resolve_blind_method",
    "save_degradation",
]

BLIND_METHODS = ("auto", "learned", "kernelgan")
# What UDVD is told by default: the estimated kernel as read ("full") or its nearest
# isotropic Gaussian ("isotropic"); chosen on the DIV2KRK-style Set5 (docs/blind.md:
# isotropic +0.2 to +0.4 dB over full, local estimates +0.6 to +0.8 dB over one per image).
BLIND_KERNEL = "isotropic"
# Default smoothing of the learned estimator's local estimates (LR pixels; None = one
# estimate per image), chosen on the same validation set.
BLIND_SMOOTHING = 8.0
# Default correction rounds of the learned estimate (module doc), per scale, chosen on the
# DIV2KRK-style Set5 (validation). x2: 31.06 dB with none, 31.33 with one, 31.49 with two;
# each costs one more UDVD pass (+3 s for a 384² LR, fp32, 2 threads), and one keeps
# `dynsr upscale --blind` of such an image within 10 s. x4: 26.22 with none, 26.21 with
# one, 26.19 with two: none. x3 (no DIV2KRK kernels): as x2. docs/blind.md.
BLIND_CORRECTION = {2: 1, 3: 1, 4: 0}
# Isotropic widths UDVD learnt (0.20, 0.21, ..., 3.00): what ``isotropic`` snaps to.
ISOTROPIC_WIDTHS = torch.linspace(0.2, 3.0, 281, dtype=torch.float64)
# The second LR's noise is drawn from this seed: the same image gives the same estimate.
# Added to both sigmas (/255) of the correction's noise ratio, so that a near-noiseless
# reading is not divided by almost nothing: one grey level.
NOISE_RATIO_FLOOR = 1.0 / 255.0
# Widths between which the correction blends Gaussian blurs (:func:`_degrade_as_told`).
CORRECTION_ANCHORS = torch.linspace(0.2, 3.0, 15, dtype=torch.float64)
CORRECTION_SEED = 1
# restore(conditions) -> the SR (C, s·h, s·w) of the LR being estimated, UDVD told conditions.
Restorer = Callable[[dict], torch.Tensor]
ESTIMATOR_NAME = "degradation-estimator"
# Noise maps are written with sigma 75 (the top of UDVD's range) as white.
NOISE_PICTURE_MAX = 75.0
KERNEL_PICTURE_ZOOM = 16


@dataclass
class BlindDegradation:
    """One LR image's estimated degradation, in UDVD's terms.

    ``dmap``: (1, 16, h, w) degradation map (15 PCA code values, sigma / 255) on the LR grid;
    ``method``: ``"learned"`` or ``"kernelgan"``; ``seconds``: time the estimate took;
    ``direct_kernel``: KernelGAN's own estimate (blur, then keep every s-th pixel), if any.
    """

    dmap: torch.Tensor
    method: str
    seconds: float
    direct_kernel: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)

    @property
    def noise_map(self) -> torch.Tensor:
        """Noise sigma per LR pixel (h, w), 0..255 scale."""
        return self.dmap[0, PCA_DIM] * 255.0

    @property
    def noise(self) -> float:
        """The mean noise sigma (0..255)."""
        return float(self.noise_map.mean())

    @property
    def varies(self) -> bool:
        """Whether the map differs across the image (local estimates)."""
        return bool((self.dmap != self.dmap[:, :, :1, :1]).any())

    def kernel(self, row: int | None = None, col: int | None = None) -> torch.Tensor:
        """The 15×15 kernel UDVD is told (UDVD's convention: blur, then bicubic) at an LR
        pixel, or the image's mean kernel."""
        codes = self.dmap[0, :PCA_DIM]
        code = codes.mean(dim=(-2, -1)) if row is None else codes[:, row, col]
        return kernel_from_code(code.double()).float()

    def isotropic_index(self) -> torch.Tensor:
        """Per LR pixel (1, h, w), the index in :data:`ISOTROPIC_WIDTHS` of the isotropic
        Gaussian nearest (in code space) to the estimated kernel."""
        codes = self.dmap[:, :PCA_DIM]
        table = _isotropic_codes().to(codes.dtype)
        if not self.varies:
            index = torch.cdist(codes[:, :, 0, 0], table).argmin(dim=1)
            return index[:, None, None].expand(-1, *codes.shape[-2:])
        flat = codes.permute(0, 2, 3, 1).reshape(-1, PCA_DIM)
        return torch.cdist(flat, table).argmin(dim=1).reshape(codes.shape[0],
                                                             *codes.shape[-2:])

    def isotropic(self) -> BlindDegradation:
        """The same estimate with every kernel replaced by the nearest (in code space)
        isotropic Gaussian of UDVD's training widths 0.2-3.0: UDVD (all shipped weights)
        learnt isotropic kernels only, and an anisotropic code, even the true one, lies
        outside what it saw."""
        codes = self.dmap[:, :PCA_DIM]
        projected = _isotropic_codes().to(codes.dtype)[self.isotropic_index()]
        dmap = torch.cat([projected.permute(0, 3, 1, 2), self.dmap[:, PCA_DIM:]], dim=1)
        return BlindDegradation(dmap.contiguous(), self.method, self.seconds,
                                self.direct_kernel, {**self.settings, "kernel": "isotropic"})

    def conditions(self) -> dict:
        """UDVD's keyword arguments: ``blur`` (a (1, 15, h, w) code map) and ``noise``."""
        if self.varies:
            return {"blur": self.dmap[:, :PCA_DIM], "noise": self.dmap[:, PCA_DIM:] * 255.0}
        return {"blur": self.dmap[:, :PCA_DIM], "noise": self.noise}

    def summary(self) -> dict:
        """Numbers for JSON reports: method, time, mean and range of sigma, the mean code."""
        noise = self.noise_map
        return {"method": self.method, "seconds": round(self.seconds, 3),
                "noise_sigma": round(self.noise, 3),
                "noise_sigma_range": [round(float(noise.min()), 3), round(float(noise.max()), 3)],
                "varies": self.varies,
                "kernel_code": [round(float(v), 6) for v in
                                self.dmap[0, :PCA_DIM].mean(dim=(-2, -1))],
                **self.settings}


@functools.lru_cache(maxsize=1)
def _isotropic_codes() -> torch.Tensor:
    """Codes (281, 15) of the isotropic Gaussians of :data:`ISOTROPIC_WIDTHS` (UDVD's)."""
    return kernel_code(isotropic_gaussian(PCA_KERNEL_SIZE, ISOTROPIC_WIDTHS,
                                          dtype=torch.float64))


@functools.lru_cache(maxsize=6)
def _cached_estimator(scale: int, weights: str | None, folder: str) -> DegradationEstimator:
    if weights is None:
        entry = find_weights(ESTIMATOR_NAME, scale, folder)
        if entry is None:
            raise WeightsError(f"no shipped degradation-estimator weights for x{scale} "
                               f"(use --blind-method kernelgan, x2 and x4)")
        model = create(ESTIMATOR_NAME, scale, **entry.config)
        return load_state_dict(model, entry.path, entry.sha256).eval()
    config = weights_model_config(weights, ESTIMATOR_NAME, scale)
    return load_state_dict(create(ESTIMATOR_NAME, scale, **config), weights).eval()


def load_estimator(scale: int, weights: str | Path | None = None) -> DegradationEstimator:
    """The degradation estimator for ``scale``: shipped weights (checked against their
    sha256) or a given file; loaded once per process."""
    return _cached_estimator(scale, None if weights is None else str(weights),
                             str(default_weights_dir()))


def resolve_blind_method(method: str, scale: int) -> str:
    """``"learned"`` or ``"kernelgan"``: ``"auto"`` is the learned estimator where weights for
    ``scale`` ship, else KernelGAN (x2 and x4); ``ValueError`` when neither can run."""
    if method not in BLIND_METHODS:
        raise ValueError(f"blind method must be one of {', '.join(BLIND_METHODS)}, "
                         f"got {method!r}")
    if method == "auto":
        method = "learned" if find_weights(ESTIMATOR_NAME, scale) is not None else "kernelgan"
    if method == "kernelgan" and scale not in (2, 4):
        raise ValueError(f"KernelGAN estimates x2 and x4 kernels only, and no "
                         f"degradation-estimator weights ship for x{scale}")
    return method


def estimate_blind_degradation(
    lr: torch.Tensor,
    scale: int,
    method: str = "auto",
    *,
    smoothing: float | None = BLIND_SMOOTHING,
    isotropic: bool = BLIND_KERNEL == "isotropic",
    estimator_weights: str | Path | None = None,
    kernelgan_iterations: int = 3000,
    seed: int = 0,
    restore: Restorer | None = None,
    correction: int | None = None,
) -> BlindDegradation:
    """The degradation of one LR image ``lr`` (C, h, w) in [0, 1] at ``scale``.

    ``method="auto"``: ``"learned"`` where estimator weights ship for ``scale``, else
    ``"kernelgan"`` (:func:`resolve_blind_method`).
    ``method="learned"``: the shipped estimator (or ``estimator_weights``), one map per image
    (``smoothing=None``) or smoothed per-pixel estimates (``smoothing`` in LR pixels);
    ``isotropic``: each kernel replaced by the nearest isotropic one
    (:meth:`BlindDegradation.isotropic`).
    ``method="kernelgan"``: KernelGAN (``kernelgan_iterations``, ``seed``) and the patch-PCA
    noise level, one kernel and one sigma per image.
    ``restore``: the UDVD the estimate is for, as a :data:`Restorer`; given, the learned
    estimate told as isotropic kernels gets ``correction`` steps of
    :func:`correct_degradation` (None: :func:`default_correction`; 0: none).
    """
    method = resolve_blind_method(method, scale)
    steps = _correction_steps(correction, restore, method, isotropic, scale)
    if lr.dim() != 3:
        raise ValueError(f"expected one (C, h, w) image, got shape {tuple(lr.shape)}")
    height, width = lr.shape[-2:]
    start = time.perf_counter()
    if method == "learned":
        estimator = load_estimator(scale, estimator_weights)
        estimate = estimator.estimate(lr[None].float().cpu(), smoothing=smoothing)
        found = BlindDegradation(estimate.dmap, method, 0.0, settings={"smoothing": smoothing})
        if steps:
            found = correct_degradation(scale, found, restore, steps, estimator_weights)
        found = found.isotropic() if isotropic else found
        found.seconds = time.perf_counter() - start
        return found
    from dynsr.zeroshot.blind import estimate_degradation  # KernelGAN: heavy, load on use

    found = estimate_degradation(lr, scale, iterations=kernelgan_iterations, seed=seed)
    code = kernel_code(found.udvd_kernel.double()).float()
    dmap = torch.cat([code, torch.tensor([found.noise / 255.0])])
    dmap = dmap[None, :, None, None].expand(1, PCA_DIM + 1, height, width).contiguous()
    estimate = BlindDegradation(dmap, method, 0.0, direct_kernel=found.kernel,
                                settings={"kernelgan_iterations": kernelgan_iterations,
                                          "seed": seed})
    estimate = estimate.isotropic() if isotropic else estimate
    estimate.seconds = time.perf_counter() - start
    return estimate


def learned_direct_kernel(lr: torch.Tensor, scale: int,
                          estimator_weights: str | Path | None = None) -> torch.Tensor:
    """The learned estimator's reading of one LR image ``lr`` (C, h, w) as one kernel of
    "blur, then keep every ``scale``-th pixel" (DIV2KRK's and KernelGAN's model, on MATLAB
    bicubic's grid: :func:`dynsr.degrade.direct_kernel_from_udvd`), float64, sum 1: the mean
    over the image of the kernels read per pixel with the default smoothing, as read (not
    snapped to isotropic ones), uncorrected. What DualSR's downsampler can be fixed to
    instead of KernelGAN's estimate (:func:`dynsr.zeroshot.zeroshot`, ``learned_kernel``).

    Chosen on the DIV2KRK-style Set5 x2 (validation; mean kernel SSE against the truth, the
    direct kernels cut to 13×13): 0.0019 this way, 0.0022 from the one confidence-weighted
    reading per image, 0.0023 from its nearest isotropic kernel."""
    reading = estimate_blind_degradation(lr, scale, "learned", isotropic=False, correction=0,
                                         estimator_weights=estimator_weights)
    return direct_kernel_from_udvd(reading.kernel().double(), scale)


def default_correction(scale: int) -> int:
    """The rounds of correction ``--blind`` runs by default at ``scale``
    (:data:`BLIND_CORRECTION`)."""
    return BLIND_CORRECTION.get(scale, 0)


def _correction_steps(correction: int | None, restore: Restorer | None, method: str,
                      isotropic: bool, scale: int) -> int:
    """How many correction steps run: the default only where they can, ``ValueError`` when
    ones asked for cannot."""
    if correction is None:
        return default_correction(scale) if restore is not None and method == "learned" \
            and isotropic else 0
    if correction < 0:
        raise ValueError(f"correction steps must be 0 or more, got {correction}")
    if correction and method != "learned":
        raise ValueError("the correction refines the learned estimator's reading, not "
                         "KernelGAN's")
    if correction and not isotropic:
        raise ValueError("the correction degrades UDVD's output with the isotropic kernels it "
                         "was told: it needs the isotropic kernel (--blind-kernel isotropic)")
    if correction and restore is None:
        raise ValueError("the correction needs the UDVD the estimate is for (restore=)")
    return correction


def correct_degradation(scale: int, reading: BlindDegradation, restore: Restorer,
                        steps: int = 1,
                        estimator_weights: str | Path | None = None) -> BlindDegradation:
    """The learned ``reading`` of an LR image corrected by ``steps`` rounds of
    self-calibration (module doc). Each round: UDVD told the current estimate's nearest
    isotropic kernels and its noise upscales the LR (``restore``); the SR is degraded again
    with the estimate's widths and noise (:func:`_degrade_as_told`); the estimator reads
    this second LR (same smoothing): what it reads of the kernel minus what made it is its
    bias, subtracted from the first reading; the noise is scaled by what made it over what
    was read. Returns the corrected raw estimate (the caller snaps
    it to isotropic kernels as usual). Each round costs one UDVD pass and one estimate.
    Measured: docs/blind.md."""
    smoothing = reading.settings.get("smoothing")
    estimator = load_estimator(scale, estimator_weights)
    generator = torch.Generator().manual_seed(CORRECTION_SEED)
    first = reading.dmap
    estimate = reading
    for _ in range(steps):
        told = estimate.isotropic()
        sr = restore(told.conditions()).float()[None]
        again, truth = _degrade_as_told(sr, estimate, scale, generator)
        reread = estimator.estimate(again, smoothing=smoothing).dmap
        codes = first[:, :PCA_DIM] - (reread[:, :PCA_DIM] - truth[:, :PCA_DIM])
        # Noise is misread by a factor, not an offset (a grey image, its noise the same in
        # the three channels the estimator reads, reads ~1.67x its sigma): the correction is
        # the ratio of what made the second LR to what was read off it. (An offset gave
        # sigma 15 -> 25 -> 11 on grey Set5, and lost 10 dB.)
        ratio = (truth[:, PCA_DIM:] + NOISE_RATIO_FLOOR) / (reread[:, PCA_DIM:]
                                                           + NOISE_RATIO_FLOOR)
        noise = first[:, PCA_DIM:] * ratio
        dmap = torch.cat([codes, noise.clamp_min(0.0)], dim=1)
        estimate = BlindDegradation(dmap, reading.method, 0.0,
                                    settings={**reading.settings, "correction": steps})
    return estimate


def _degrade_as_told(sr: torch.Tensor, estimate: BlindDegradation, scale: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``sr`` (1, C, H, W) degraded as UDVD was told ``estimate``: blurred by its isotropic
    widths, bicubic-downscaled, Gaussian noise of its sigma; and the map of what made it.

    Per LR pixel the width w lies between two of :data:`CORRECTION_ANCHORS`; the pixel is
    blurred by the mix ``(1 − t) G_a + t G_b`` of their Gaussians, as the blend of the two
    blurred images (a few separable convolutions, not a 15×15 kernel per pixel). The code is
    linear in the kernel, so the map of what made the LR is the same blend of the two
    codes: exact, not the nearest isotropic code."""
    widths = ISOTROPIC_WIDTHS[estimate.isotropic_index()][0]  # (h, w), float64
    anchors = CORRECTION_ANCHORS
    low = torch.bucketize(widths, anchors, right=True).clamp(1, len(anchors) - 1) - 1
    t = ((widths - anchors[low]) / (anchors[low + 1] - anchors[low])).clamp(0.0, 1.0)
    weights = torch.zeros(len(anchors), *widths.shape, dtype=torch.float64)
    weights.scatter_add_(0, low[None], (1 - t)[None])
    weights.scatter_add_(0, (low + 1)[None], t[None])
    codes = _anchor_codes()  # (A, 15)
    truth_codes = torch.einsum("ahw,ac->chw", weights, codes)[None].float()
    blurred = torch.zeros_like(sr)
    taps = torch.arange(PCA_KERNEL_SIZE, dtype=torch.float64) - PCA_KERNEL_SIZE // 2
    for index in torch.nonzero(weights.sum(dim=(1, 2)) > 0)[:, 0].tolist():
        share = weights[index].float().repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        # The isotropic Gaussian is the outer product of this 1-D one: two 15-tap passes.
        line = torch.exp(-0.5 * (taps / float(anchors[index])) ** 2)
        line = (line / line.sum()).float()
        blurred += share[:sr.shape[-2], :sr.shape[-1]] * separable_blur(sr, line)
    noise = estimate.dmap[:, PCA_DIM:]
    again = add_noise(bicubic_downsample(blurred, scale), noise * 255.0, generator=generator)
    return again, torch.cat([truth_codes, noise], dim=1)


@functools.lru_cache(maxsize=1)
def _anchor_codes() -> torch.Tensor:
    """Codes (A, 15) of the isotropic Gaussians at :data:`CORRECTION_ANCHORS`."""
    return kernel_code(isotropic_gaussian(PCA_KERNEL_SIZE, CORRECTION_ANCHORS,
                                          dtype=torch.float64))


def kernel_width(kernel: torch.Tensor) -> float:
    """The width of a kernel as one number: the root mean square of its two principal
    standard deviations (an isotropic Gaussian of width w gives w), from its second moments
    (negative taps of a PCA reconstruction clipped)."""
    k = kernel.double().clamp_min(0.0)
    k = k / k.sum()
    coords = torch.arange(k.shape[-1], dtype=torch.float64)
    rows, cols = k.sum(1), k.sum(0)
    my, mx = float((rows * coords).sum()), float((cols * coords).sum())
    var_y = float((rows * (coords - my) ** 2).sum())
    var_x = float((cols * (coords - mx) ** 2).sum())
    return ((var_y + var_x) / 2) ** 0.5


def _kernel_picture(kernel: torch.Tensor) -> torch.Tensor:
    """(1, 15·z, 15·z) grey picture of a kernel: its largest tap white, negatives black."""
    picture = (kernel / kernel.max().clamp_min(1e-12)).clamp(0.0, 1.0)
    return picture.repeat_interleave(KERNEL_PICTURE_ZOOM, 0).repeat_interleave(
        KERNEL_PICTURE_ZOOM, 1)[None]


def save_degradation(estimate: BlindDegradation, folder: str | Path, stem: str) -> list[Path]:
    """Write what the model was told, for a person to check: ``STEM_kernel.png`` (the mean
    kernel, enlarged ×16; for maps that vary, a 3×3 grid of the kernels at the image's
    quarter points), ``STEM_noise.png`` (the sigma map at LR size, black 0 to white 75) and
    ``STEM_degradation.json`` (the numbers). Each file is written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if estimate.varies:
        height, width = estimate.dmap.shape[-2:]
        rows = [round(height * f) for f in (0.2, 0.5, 0.8)]
        cols = [round(width * f) for f in (0.2, 0.5, 0.8)]
        tiles = [[_kernel_picture(estimate.kernel(r, c)) for c in cols] for r in rows]
        gap = KERNEL_PICTURE_ZOOM // 2
        padded = [[F.pad(t, (0, gap, 0, gap), value=0.5) for t in row] for row in tiles]
        kernel_picture = torch.cat([torch.cat(row, dim=2) for row in padded], dim=1)
        kernel_picture = kernel_picture[:, :-gap, :-gap]
    else:
        kernel_picture = _kernel_picture(estimate.kernel())
    noise_picture = (estimate.noise_map / NOISE_PICTURE_MAX).clamp(0.0, 1.0)[None]
    written = [write_image(folder / f"{stem}_kernel.png", kernel_picture),
               write_image(folder / f"{stem}_noise.png", noise_picture)]
    info = {**estimate.summary(), "kernel_picture": f"{stem}_kernel.png",
            "noise_picture": f"{stem}_noise.png", "noise_picture_white_sigma": NOISE_PICTURE_MAX}
    if estimate.direct_kernel is not None:
        info["kernelgan_kernel"] = estimate.direct_kernel.tolist()
    written.append(atomic_write_json(folder / f"{stem}_degradation.json", info))
    return [Path(p) for p in written]

