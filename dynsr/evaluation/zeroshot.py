"""Measuring zero-shot DualSR: trained on each LR image, scored against its HR image.

Besides PSNR-Y / SSIM-Y, each row has the seconds of training and, where the true kernel is
known, the error of the learnt kernel (:func:`dynsr.metrics.kernel_error`); a
:class:`QualityCurve` can follow the score during training.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from dynsr.evaluation.degradation import Degradation
from dynsr.evaluation.protocol import EvalResult, load_pair, true_kernel
from dynsr.io import ImageReadError, write_image
from dynsr.metrics import evaluate_pair, kernel_error
from dynsr.ops import quantize
from dynsr.zeroshot.dualsr import DualSRConfig, zeroshot

__all__ = ["ABLATIONS", "QualityCurve", "evaluate_zeroshot"]

#: The paper's Table 2 ablations: name -> the :class:`DualSRConfig` switch they turn off.
ABLATIONS = {"no-interp": "interp_loss", "no-forward-cycle": "forward_cycle",
             "no-backward-cycle": "backward_cycle"}


class QualityCurve:
    """A DualSR ``checkpoint`` hook (:func:`dynsr.zeroshot.zeroshot`): PSNR-Y/SSIM-Y of the
    whole-image SR against ``hr`` every ``every`` iterations and at the last one, with the
    seconds since ``start`` (default: now) minus the seconds spent scoring. ``every`` None
    only keeps the clock. ``report(point)`` is called with each new point."""

    def __init__(self, hr: torch.Tensor | None, every: int | None, iterations: int,
                 crop: int, *, start: float | None = None,
                 report: Callable[[dict], None] | None = None) -> None:
        self.hr, self.every, self.iterations, self.crop = hr, every, iterations, crop
        self.start = time.perf_counter() if start is None else start
        self.report = report
        self.points: list[dict] = []
        self.spent = 0.0  # seconds spent scoring
        self.trained = 0.0  # seconds of training up to the last iteration seen

    def elapsed(self) -> float:
        """Seconds since the start, without the scoring."""
        return time.perf_counter() - self.start - self.spent

    def __call__(self, iteration: int, upscale: Callable[[], torch.Tensor]) -> None:
        self.trained = self.elapsed()
        done = iteration + 1
        if self.hr is None or self.every is None or (done % self.every
                                                      and done != self.iterations):
            return
        begin = time.perf_counter()
        scores = evaluate_pair(quantize(upscale().to(torch.float64)), self.hr, self.crop)
        self.spent += time.perf_counter() - begin
        point = {"iteration": done, "seconds": round(self.trained, 1),
                 "psnr_y": round(scores["psnr_y"], 4), "ssim_y": round(scores["ssim_y"], 5)}
        self.points.append(point)
        if self.report is not None:
            self.report(point)


def evaluate_zeroshot(
    hr_paths: list[Path],
    degradation: Degradation,
    config: DualSRConfig,
    *,
    lr_dir: Path | None = None,
    crop: int | None = None,
    fixed_kernel: str | None = None,
    seed: int = 0,
    save_sr: Path | None = None,
    curve_every: int | None = None,
    kernelgan_iterations: int = 3000,
    label: str = "dynsr eval",
) -> EvalResult:
    """PSNR-Y/SSIM-Y of DualSR trained on each LR image, plus its seconds and, where the true
    kernel is known, the kernel error (:func:`dynsr.metrics.kernel_error`).

    ``fixed_kernel``: None (DualSR learns G_DN), ``"true"`` (G_DN fixed to the true kernel),
    ``"kernelgan"`` (G_DN fixed to KernelGAN's estimate, made first with
    ``kernelgan_iterations`` and the same seed) or ``"learned"`` (G_DN fixed to the learned
    estimator's reading); an estimate's seconds are included and its kernel error reported.
    ``curve_every``: x2 only; each row gets ``curve``, :class:`QualityCurve`'s points."""
    crop = degradation.scale if crop is None else crop
    if curve_every is not None and (curve_every < 1 or degradation.scale != 2):
        raise ValueError(f"--curve-every needs a positive N and x2, got N={curve_every}, "
                         f"x{degradation.scale}")
    rows, failures = [], 0
    for hr_path in tqdm(hr_paths, desc="eval dualsr", unit="img", disable=None, leave=False):
        try:
            lr, hr = load_pair(hr_path, degradation, lr_dir)
            truth = true_kernel(hr_path, degradation, lr_dir)
            if fixed_kernel == "true" and truth is None:
                raise ValueError(f"{hr_path}: --known-kernel, but the true kernel is unknown")
            curve = QualityCurve(hr, curve_every, config.iterations, crop)
            sr, kernel, _ = zeroshot(
                lr.float(), degradation.scale, config.iterations, seed, config=config,
                known_kernel=truth if fixed_kernel == "true" else None,
                kernelgan_iterations=kernelgan_iterations if fixed_kernel == "kernelgan"
                else None, learned_kernel=fixed_kernel == "learned", checkpoint=curve)
            seconds = curve.elapsed()
            sr = quantize(sr.to(torch.float64))
            if sr.shape != hr.shape:
                raise ValueError(f"{hr_path}: SR {tuple(sr.shape)} does not match HR "
                                 f"{tuple(hr.shape)}")
            row = {"name": hr_path.stem, **evaluate_pair(sr, hr, crop),
                   "seconds": round(seconds, 2)}
            if truth is not None and fixed_kernel != "true":
                row.update(kernel_error(kernel, truth))
            if curve_every is not None:
                row["curve"] = curve.points
            if save_sr is not None:
                write_image(save_sr / f"{hr_path.stem}.png", sr)
        except (ImageReadError, ValueError, OSError) as err:
            failures += 1
            tqdm.write(f"{label}: skipped: {err}", file=sys.stderr)
            continue
        rows.append(row)
    return EvalResult(rows, failures)
