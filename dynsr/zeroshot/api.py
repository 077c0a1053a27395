"""``dynsr.zeroshot(image, scale=2)``: DualSR on one image of any kind, as ``dynsr zeroshot``.

The image may be a path, a PIL image, a NumPy array or a (C, H, W) / (1, C, H, W) tensor;
the SR image comes back as the same kind (the rules of :mod:`dynsr.api`: a path gives an
:class:`~dynsr.api.UpscaledImage` with ``.save()``; bit depth, ICC profile and EXIF are
kept; alpha is upscaled with MATLAB bicubic and the colour premultiplied by it). DualSR
trains on the colour (or grey) planes themselves, so one call trains one DualSR.

Defaults: the paper's 3000 iterations and learning-rate schedule (:data:`DEFAULT_ITERATIONS`),
with bf16 autocast and channels_last where the CPU has native bf16
(:func:`dynsr.api.default_precision`); ``precision="fp32"`` is the paper's run exactly, and
fewer ``iterations`` scale the schedule (steps at a quarter of them). docs/zeroshot.md: on its
DIV2KRK-style Set14, 1000 iterations lose 0.80 dB to 3000, and the two-step
``kernelgan_iterations`` recipe scores 0.18 dB above joint DualSR's 3000 in about 40 % of its
time (Set14, and a DIV2KRK-sized photo); the quick ``learned_kernel`` recipe (the learned
estimator's kernel, then 2000 upsampler iterations on 48-pixel crops) 0.48 dB above it in
about a fifth of its time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from dynsr.api import (
    ImageLike,
    PlanePair,
    UpscaledImage,
    default_precision,
    upscale_in_memory,
    upscale_with_alpha,
)
from dynsr.io import read_image
from dynsr.ops.resize import imresize
from dynsr.zeroshot.dualsr import DualSRConfig, ProgressFn, zeroshot

__all__ = ["DEFAULT_ITERATIONS", "KERNEL_FIRST_ITERATIONS", "LEARNED_KERNEL_CROP",
           "LEARNED_KERNEL_ITERATIONS",
           "ZeroShotResult", "config_for", "default_iterations", "progress_bar",
           "progress_total", "zeroshot_image"]

#: DualSR's iterations per x2 step by default: the paper's (1000 was dynsr's default until
#: the Set14 table showed it 0.80 dB worse).
DEFAULT_ITERATIONS = 3000
#: The upsampler's iterations after KernelGAN in the two-step recipe: the measured one.
KERNEL_FIRST_ITERATIONS = 1000
#: The quick recipe after the learned estimator's kernel, chosen on the DIV2KRK-style Set5
#: (validation, docs/zeroshot.md): for the same work, many small crops beat fewer large ones
#: (HR crops of 48 instead of the paper's 128, LR crops 24); the upsampler's iterations.
LEARNED_KERNEL_ITERATIONS = 2000
LEARNED_KERNEL_CROP = 48


def default_iterations(kernelgan_iterations: int | None, learned_kernel: bool = False) -> int:
    """DualSR's iterations when none are given: :data:`DEFAULT_ITERATIONS` for joint
    training, :data:`KERNEL_FIRST_ITERATIONS` after a KernelGAN step,
    :data:`LEARNED_KERNEL_ITERATIONS` after the learned estimator's reading."""
    if learned_kernel:
        return LEARNED_KERNEL_ITERATIONS
    return DEFAULT_ITERATIONS if kernelgan_iterations is None else KERNEL_FIRST_ITERATIONS


@dataclass(frozen=True, eq=False)
class ZeroShotResult:
    """What :func:`zeroshot_image` gives back."""

    image: ImageLike | UpscaledImage  # the SR image, the same kind as the input
    kernel: torch.Tensor  # the estimated blur kernel (see dynsr.zeroshot.dualsr.zeroshot)
    log: list[dict[str, float]]  # the losses of every iteration


def config_for(iterations: int, precision: str | None = None, *,
               learned_kernel: bool = False) -> DualSRConfig:
    """DualSR's settings for a run of ``iterations`` in ``precision`` ("fp32", "bf16" or
    None: bf16 where the CPU has native bf16); bf16 goes with channels_last (fp32 G_UP runs
    faster without it on AVX2: 0.48-0.50 against 0.60-0.65 s for one iteration's forward
    and backward, an AMD EPYC capped to AVX2). ``learned_kernel``: the quick recipe's crops
    (:data:`LEARNED_KERNEL_CROP`)."""
    precision = default_precision(torch.device("cpu")) if precision is None else precision
    crop = {"hr_crop": LEARNED_KERNEL_CROP} if learned_kernel else {}
    return DualSRConfig(iterations=iterations, precision=precision,
                        channels_last=precision == "bf16", **crop)


def progress_total(iterations: int, scale: int, kernelgan_iterations: int | None) -> int:
    """The iterations a progress bar counts: KernelGAN's (two-step runs), then DualSR's per
    x2 step."""
    return (kernelgan_iterations or 0) + iterations * (1 if scale == 2 else 2)


def progress_bar(name: str, total: int) -> tuple[tqdm, ProgressFn]:
    """A tqdm bar over ``total`` iterations (ETA included) and the DualSR progress hook
    that moves it and shows the losses."""
    bar = tqdm(total=total, desc=name, unit="it", disable=None, dynamic_ncols=True)

    def progress(iteration: int, iterations: int, losses: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(gan=f"{losses['gan']:.3f}", fwd=f"{losses['cycle_forward']:.3f}",
                        bwd=f"{losses['cycle_backward']:.3f}", interp=f"{losses['interp']:.3f}",
                        d=f"{losses['d']:.3f}", refresh=False)

    return bar, progress


def zeroshot_image(image: ImageLike, scale: int = 2, *, iterations: int | None = None,
                   precision: str | None = None, seed: int = 0,
                   progress: bool = False,
                   kernelgan_iterations: int | None = None,
                   learned_kernel: bool = False) -> ZeroShotResult:
    """DualSR x``scale`` (2 or 4) trained on ``image`` itself (module doc); seeded, so the
    same image, seed and machine give the same result. ``progress``: a progress bar.
    ``kernelgan_iterations``: two steps, KernelGAN's kernel first, then the upsampler with
    the downsampler fixed to it (:func:`dynsr.zeroshot.dualsr.zeroshot`); ``learned_kernel``:
    the same with the learned estimator's kernel, the quick recipe. ``iterations``:
    DualSR's per x2 step, by default :func:`default_iterations`."""
    if isinstance(image, torch.Tensor) and image.dim() == 4 and image.shape[0] != 1:
        raise ValueError(f"one image at a time (DualSR trains on each image), got a batch of "
                         f"{image.shape[0]}")
    if iterations is None:
        iterations = default_iterations(kernelgan_iterations, learned_kernel)
    config = config_for(iterations, precision, learned_kernel=learned_kernel)
    trained: dict = {}

    def run_colour(colour: torch.Tensor) -> torch.Tensor:
        total = progress_total(iterations, scale, kernelgan_iterations)
        bar, hook = progress_bar("dualsr", total) if progress else (None, None)
        try:
            sr, kernel, log = zeroshot(colour, scale, iterations, seed, hook, config=config,
                                       kernelgan_iterations=kernelgan_iterations,
                                       learned_kernel=learned_kernel)
        finally:
            if bar is not None:
                bar.close()
        trained.update(kernel=kernel, log=log)
        return sr

    def run_alpha(alpha: torch.Tensor) -> torch.Tensor:
        return imresize(alpha[None].double(), scale=scale)[0].float()

    def planes(colour: torch.Tensor, alpha: torch.Tensor | None) -> PlanePair:
        return upscale_with_alpha(colour, alpha, run_colour, run_alpha)

    if isinstance(image, (str, os.PathLike)):
        loaded = read_image(image)
        colour, alpha = planes(loaded.pixels, loaded.alpha)
        result: ImageLike | UpscaledImage = UpscaledImage(
            colour, alpha, loaded.bit_depth, loaded.icc_profile, loaded.exif, loaded.path)
    else:
        result = upscale_in_memory(image, planes)
    return ZeroShotResult(result, trained["kernel"], trained["log"])
