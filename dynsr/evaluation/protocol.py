"""PSNR-Y / SSIM-Y of a model on HR images, the way papers measure.

LR images are made from the HR images by a :class:`~dynsr.evaluation.Degradation`, or read
from a folder (matched by file name, :func:`find_lr`). HR images are cropped at the top-left
to a multiple of the scale first. Scores (:func:`dynsr.metrics.evaluate_pair`): Y channel
(BT.601 studio range), SR rounded to 8 bit, ``crop = scale`` border, valid-region Gaussian
SSIM, float64; the data-set score is the mean of the per-image scores. ``dynsr eval`` and
training's validation both measure through :func:`evaluate_images`.

Real pairs (RealSR, City100) store the LR registered and upsampled onto the HR grid: LR and HR
of one size. At scale 1 such an LR is the input of a model that restores it as it is
(``ddet-real``); an xS model is given it bicubic-downscaled by S (``lr_downscale``); either
way the border left out is 8 px (:data:`GRID_PAIRS_CROP`). ``dynsr score LR HR --crop 8``
scores the LR itself.
"""

from __future__ import annotations

import datetime
import functools
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dynsr import __version__
from dynsr.blind import BLIND_SMOOTHING, estimate_blind_degradation, save_degradation
from dynsr.degrade import load_kernel, pad_kernel, udvd_kernel_from_direct
from dynsr.degrade.degradation_map import PCA_KERNEL_SIZE
from dynsr.evaluation.degradation import Degradation, modcrop
from dynsr.hardware import describe_cpu
from dynsr.io import ImageReadError, list_images, load_tensor, read_image, write_image
from dynsr.metrics import MetricSettings, evaluate_pair, kernel_error
from dynsr.models import create, get_spec
from dynsr.models.inference import upscale_batch
from dynsr.ops import imresize, quantize
from dynsr.upscale.weights import (
    file_sha256,
    find_weights,
    load_state_dict,
    weights_hint,
    weights_model_config,
)

__all__ = [
    "GRID_PAIRS_CROP",
    "Conditions",
    "EvalResult",
    "blind_conditions",
    "default_crop",
    "evaluate_images",
    "find_lr",
    "grid_pairs_settings",
    "load_evaluated_model",
    "load_pair",
    "model_conditions",
    "on_hr_grid",
    "run_record",
    "true_kernel",
]

#: Border left out of the metrics on real pairs whose LR is on the HR grid (CONVENTIONS.md:
#: dynsr's fixed 8 px, the same for every row of such a table).
GRID_PAIRS_CROP = 8

#: What a non-blind model is told: keyword arguments, or a function of the HR path and the LR
#: image giving them (a kernel per image, or one estimated from the LR image).
Conditions = dict | Callable[[Path, torch.Tensor], dict]


def find_lr(lr_dir: Path, hr_path: Path, scale: int) -> Path:
    """The LR file for ``hr_path`` in ``lr_dir``: same stem, or stem + a scale suffix, or
    RealSR's ``NAME_LR{s}`` for ``NAME_HR``."""
    # Never the HR file itself (RealSR keeps both in one folder).
    candidates = [c for c in list_images([lr_dir]) if c.resolve() != hr_path.resolve()]
    stem = hr_path.stem
    suffix = re.compile(rf"^{re.escape(stem)}(?:[_-]?(?:x|lr|LR|LRx)?{scale})?$")
    for c in candidates:
        if suffix.match(c.stem):
            return c
    if stem.endswith("_HR"):  # RealSR's pairs: Canon_001_HR.png and Canon_001_LR2.png
        realsr = f"{stem[:-3]}_LR{scale}"
        for c in candidates:
            if c.stem == realsr:
                return c
    raise ValueError(f"{hr_path}: no LR image for it in {lr_dir}")


@dataclass
class EvalResult:
    """Per-image scores (``name``, ``psnr_y``, ``ssim_y``) and the number of skipped images."""

    rows: list[dict]
    failures: int

    def mean(self) -> dict[str, float]:
        """The data-set scores: mean of the per-image scores (``ValueError`` if none)."""
        if not self.rows:
            raise ValueError("no image could be evaluated")
        means = {k: sum(r[k] for r in self.rows) / len(self.rows) for k in ("psnr_y", "ssim_y")}
        for key in ("kernel_sse", "kernel_psnr", "seconds"):  # zero-shot models' extras
            values = [r[key] for r in self.rows if key in r]
            if values:
                means[key] = sum(values) / len(values)
        return means


def on_hr_grid(scale: int, lr_dir: Path | None, lr_downscale: int = 1) -> bool:
    """Whether the given LR images are on the HR grid (real pairs: RealSR, City100): read
    at scale 1 (the model takes them as they are) or bicubic-downscaled (``lr_downscale``)."""
    return lr_dir is not None and (scale == 1 or lr_downscale > 1)


def default_crop(scale: int, lr_dir: Path | None = None, lr_downscale: int = 1) -> int:
    """The border left out of the metrics: the scale, by convention; :data:`GRID_PAIRS_CROP`
    for pairs on the HR grid, whatever the model's scale, so that every row of a real-pair
    table is measured on the same pixels."""
    return GRID_PAIRS_CROP if on_hr_grid(scale, lr_dir, lr_downscale) else scale


def grid_pairs_settings(scale: int, lr_downscale: int = 1) -> dict:
    """What a results file records about LR images given on the HR grid."""
    if lr_downscale > 1:
        given = (f"the LR bicubic-downscaled by {lr_downscale} (MATLAB imresize "
                 f"1/{lr_downscale}, antialiased, rounded to 8 bit), HR and LR first cropped "
                 f"top-left to a multiple of {lr_downscale}; the model upscales it "
                 f"x{lr_downscale}")
    else:
        given = "the LR as it is (already on the HR grid)"
    return {"lr_on_hr_grid": True, "lr_downscale": lr_downscale, "model_input": given,
            "matching": "LR file of the HR file's name (optionally + a scale suffix)"}


def load_pair(hr_path: Path, degradation: Degradation, lr_dir: Path | None = None,
              lr_downscale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) float64 (C, h, w) / (C, H, W) for one HR file: HR cropped to a multiple of
    the scale; LR read from ``lr_dir`` or made by ``degradation``.

    Pairs on the HR grid (the LR file has the HR file's size, :func:`on_hr_grid`): at scale 1
    the LR is the model's input as it is; with ``lr_downscale`` D (the scale then being D)
    the LR, cropped to a multiple of D like the HR, is bicubic-downscaled by D and rounded to
    8 bit, as a file of it would hold: how an xD model is scored on real pairs."""
    scale = degradation.scale
    if lr_downscale != 1 and (lr_dir is None or lr_downscale != scale):
        raise ValueError(f"lr_downscale {lr_downscale} needs given LR images and a model of "
                         f"that scale (got scale {scale})")
    original = load_tensor(hr_path).to(torch.float64)
    hr = modcrop(original, scale)
    if lr_dir is None:
        return degradation.apply(hr, hr_path.name), hr
    lr_path = find_lr(lr_dir, hr_path, scale)
    image = read_image(lr_path)
    # Exact float64 samples v / maxval, as an LR made on the fly has (not float32's).
    maxval = float(2**image.bit_depth - 1)
    lr = torch.round(image.pixels.to(torch.float64) * maxval) / maxval
    if on_hr_grid(scale, lr_dir, lr_downscale):
        if lr.shape[-2:] != original.shape[-2:]:
            raise ValueError(f"{lr_path}: {lr.shape[-1]}x{lr.shape[-2]}, not on the grid of "
                             f"{hr_path.name} ({original.shape[-1]}x{original.shape[-2]}): "
                             f"pairs on the HR grid have one size (LR images at the LR size "
                             f"need the scale)")
        if lr_downscale > 1:
            lr = quantize(imresize(modcrop(lr, lr_downscale), 1 / lr_downscale))
    return lr, hr


def true_kernel(hr_path: Path, degradation: Degradation,
                lr_dir: Path | None) -> torch.Tensor | None:
    """The blur kernel that made the LR image of ``hr_path``, when it is known: the
    degradation's, or ``LR_DIR/kernels/NAME.npy`` (as ``dynsr degrade`` writes them)."""
    if lr_dir is None:
        return degradation.kernel(hr_path.name)
    path = lr_dir / "kernels" / f"{hr_path.stem}.npy"
    return load_kernel(path) if path.is_file() else None


def blind_conditions(degradation: Degradation, lr_dir: Path | None, *, method: str = "auto",
                     smoothing: float | None = BLIND_SMOOTHING, isotropic: bool = True,
                     estimator_weights: Path | None = None,
                     iterations: int = 3000, save_dir: Path | None = None,
                     restore_with: Callable[[torch.Tensor, dict], torch.Tensor] | None = None,
                     correction: int | None = None,
                     kernel_errors: dict[str, dict]) -> Callable[[Path, torch.Tensor], dict]:
    """:data:`Conditions` estimated from each LR image (:func:`dynsr.blind.
    estimate_blind_degradation`: ``method`` ``"learned"`` or ``"kernelgan"``). Per image,
    ``kernel_errors[stem]`` gets the estimate's seconds and mean noise sigma and, where the
    true kernel is known, ``udvd_kernel_l2``: the L2 distance (15×15 taps) of the kernel UDVD
    is told from the one it should be told (the true kernel; for direct downsampling its
    least-squares UDVD equivalent, as the GT-kernel evaluation tells UDVD); KernelGAN's own
    kernel is also scored against the truth (``kernel_sse``, ``kernel_psnr``). With
    ``save_dir``, the pictures of each estimate (:func:`dynsr.blind.save_degradation`).
    ``restore_with(lr, conditions)``: the model evaluated, for ``correction`` steps of
    :func:`dynsr.blind.correct_degradation` (None: the default)."""
    def estimated(path: Path, lr: torch.Tensor) -> dict:
        estimate = estimate_blind_degradation(lr.float(), degradation.scale, method,
                                              smoothing=smoothing, isotropic=isotropic,
                                              estimator_weights=estimator_weights,
                                              kernelgan_iterations=iterations,
                                              restore=None if restore_with is None else
                                              functools.partial(restore_with, lr.float()),
                                              correction=correction)
        record = {"estimate_seconds": round(estimate.seconds, 3),
                  "noise_estimate": round(estimate.noise, 3)}
        truth = true_kernel(path, degradation, lr_dir)
        if truth is not None:
            told = (udvd_kernel_from_direct(truth.double(), degradation.scale)
                    if degradation.downsample == "direct" else truth.double())
            size = max(told.shape[-1], PCA_KERNEL_SIZE)
            record["udvd_kernel_l2"] = float((pad_kernel(estimate.kernel().double(), size)
                                              - pad_kernel(told / told.sum(), size)).norm())
            if estimate.direct_kernel is not None:
                record.update(kernel_error(estimate.direct_kernel, truth))
        kernel_errors[path.stem] = record
        if save_dir is not None:
            save_degradation(estimate, save_dir, path.stem)
        return estimate.conditions()
    return estimated


def model_conditions(name: str, degradation: Degradation) -> Conditions:
    """What model ``name`` is told about ``degradation``: nothing for blind models; the blur
    and noise for non-blind ones (per image when the kernel differs per image or the
    degradation varies across the image)."""
    if not get_spec(name).needs_degradation:
        return {}
    if degradation.per_image or degradation.varies_in_space:
        return degradation.conditions_of_file
    return degradation.model_conditions()


def evaluate_images(
    model: torch.nn.Module,
    hr_paths: list[Path],
    degradation: Degradation,
    *,
    lr_dir: Path | None = None,
    crop: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    conditions: Conditions | None = None,
    save_sr: Path | None = None,
    pairs: dict | None = None,
    desc: str = "eval",
    label: str = "dynsr eval",
    timed: bool = False,
    lr_downscale: int = 1,
) -> EvalResult:
    """PSNR-Y/SSIM-Y of ``model`` (already in eval mode) on ``hr_paths``: what ``dynsr eval``
    measures, also used by training's validation.

    ``lr_dir`` at scale 1: pairs on the HR grid, the LR given to the model as it is;
    ``lr_downscale``: such LR images bicubic-downscaled first (:func:`load_pair`). ``crop``:
    default :func:`default_crop`.

    ``conditions``: keyword arguments for non-blind models (``blur=``, ``noise=``), or a
    function of the HR path and the LR image giving them (a kernel per image, or one
    estimated from the LR image).
    ``pairs``: a dict kept by the caller in which the (LR, HR) pairs are cached between
    calls (validation measures the same images many times). Images that cannot be read or
    measured are skipped with a one-line message (starting with ``label``) and counted in
    ``failures``; ``desc`` labels the progress bar. ``timed``: each row gets ``seconds``,
    from reading the image to its SR (conditions included, scoring left out).
    """
    crop = default_crop(degradation.scale, lr_dir, lr_downscale) if crop is None else crop
    rows, failures = [], 0
    for hr_path in tqdm(hr_paths, desc=desc, unit="img", disable=None, leave=False):
        try:
            started = time.perf_counter()
            if pairs is not None and hr_path in pairs:
                lr, hr = pairs[hr_path]
            else:
                lr, hr = load_pair(hr_path, degradation, lr_dir, lr_downscale)
                if pairs is not None:
                    pairs[hr_path] = (lr, hr)
            kwargs = (conditions(hr_path, lr) if callable(conditions)
                      else (conditions or {}))
            sr = upscale_batch(model, lr.unsqueeze(0), precision=precision,
                               channels_last=channels_last, **kwargs)[0]
            sr = sr.to(torch.float64)
            seconds = time.perf_counter() - started
            if sr.shape != hr.shape:
                raise ValueError(f"{hr_path}: SR {tuple(sr.shape)} does not match HR "
                                 f"{tuple(hr.shape)} (after cropping to a multiple of "
                                 f"{degradation.scale})")
            scores = evaluate_pair(sr, hr, crop)
            if timed:
                scores["seconds"] = round(seconds, 2)
            if save_sr is not None:
                write_image(save_sr / f"{hr_path.stem}.png", sr.clamp(0, 1))
        except (ImageReadError, ValueError, OSError) as err:
            failures += 1
            tqdm.write(f"{label}: skipped: {err}", file=sys.stderr)
            continue
        rows.append({"name": hr_path.stem, **scores})
    return EvalResult(rows, failures)


def load_evaluated_model(name: str, scale: int,
                         weights: Path | None) -> tuple[torch.nn.Module, dict | None]:
    """The model with ``weights`` (or the shipped ones, sha256-checked) and what they are.

    A learned model without weights is refused: scores of random weights mean nothing.
    """
    entry = find_weights(name, scale) if weights is None else None
    config = (entry.config if entry is not None else {}) if weights is None else \
        weights_model_config(weights, name, scale)
    model = create(name, scale=scale, **config)
    if next(model.parameters(), None) is None:
        return model, None
    if weights is None and entry is None:
        raise ValueError(f"no trained weights for {name} x{scale}"
                         f"{weights_hint(name, scale)}: give --weights FILE")
    path = weights if weights is not None else entry.path
    load_state_dict(model, path, None if entry is None else entry.sha256)
    return model, {"file": str(path), "sha256": file_sha256(path),
                   "shipped": entry is not None}


def run_record(crop: int) -> dict:
    """The settings every results file records besides its own: the metrics, the machine,
    the versions and the date."""
    return {
        "metrics": MetricSettings(crop_border=crop).as_dict(),
        "threads": torch.get_num_threads(),
        "cpu": describe_cpu(),
        "dynsr": __version__,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
