"""Run several models on the same photos and write a comparison report (``dynsr compare``).

Inputs. By default the inputs are LR photos: each model upscales each of them. Two ways to
get scores (PSNR-Y / SSIM-Y):

* ``hr_dir``: the inputs are LR images and ``hr_dir`` holds their originals, matched by
  name as ``dynsr eval --lr`` matches them the other way round (``baby_x2.png``,
  ``babyx2.png``, ``baby_LR2.png`` or ``baby.png`` for ``baby.png``; RealSR's
  ``NAME_LR2`` for ``NAME_HR``). The HR image must be exactly ``scale`` times the LR.
* ``from_hr``: the inputs are HR images; each is cropped to a multiple of the scale and its
  LR made by :func:`dynsr.degrade.degrade` as ``dynsr eval`` makes it (MATLAB bicubic, 8-bit,
  optionally a Gaussian blur / kernel and AWGN seeded by the file name with eval's default
  seed 0), so the scores are ``dynsr eval``'s for the same flags (to within a few
  thousandths of a dB: models run as ``dynsr upscale`` runs them, on float32 images).

Scores are :func:`dynsr.metrics.evaluate_pair` with ``crop = scale``: the protocol of
``dynsr eval``. Every page also shows the LR (nearest-neighbour enlarged, drawn by the
browser), MATLAB bicubic (always run, as the baseline) and the HR image when there is one.
Each model's time is the wall time of its ``upscale`` call on that image (tiling and the
final rounding included; loading the model, a first warm-up run on a 16×16 image and
writing files left out).

Models are named as ``dynsr models`` lists them; ``NAME@FILE`` uses other weights (e.g. a
``dynsr train`` result). A learned model without weights is refused: random weights
compare to nothing. Non-blind models (udvd, udvd-lite) are told ``blur`` / ``noise``.

The report is built in a hidden folder next to ``out`` and renamed into place at the end,
so an interrupted or failed run leaves nothing half-written. Inputs that cannot be read are
left out with a ``path: reason`` line (kept in the report's failures); if none can be read,
nothing is written.
"""

from __future__ import annotations

import datetime
import functools
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dynsr import __version__
from dynsr.api import Upscaler, load
from dynsr.blind import (
    BLIND_KERNEL,
    BLIND_SMOOTHING,
    estimate_blind_degradation,
    save_degradation,
)
from dynsr.degrade import degrade, isotropic_gaussian
from dynsr.io import ImageReadError, LoadedImage, list_images, read_image, write_image
from dynsr.metrics import MetricSettings, evaluate_pair
from dynsr.models import get_spec
from dynsr.report.data import Figure, Page, Picture, Report, Result
from dynsr.report.figure import fit_crop, write_crop_figure
from dynsr.report.kernels import capture_kernels, dynamic_blocks, kernels_script
from dynsr.report.site import staged_folder, write_site

__all__ = ["PREVIEW_SIZE", "CompareOptions", "ModelChoice", "compare", "find_hr",
           "parse_models"]

#: Longer side of the previews in the before/after view; larger results get a downscaled
#: copy there and are shown at full resolution in the zoom only.
PREVIEW_SIZE = 1024
#: The model every report runs as the baseline.
BASELINE = "bicubic"


@dataclass(frozen=True)
class ModelChoice:
    """A model of the comparison: a registry name and optional weights."""

    name: str
    weights: Path | None = None

    @property
    def label(self) -> str:
        return self.name if self.weights is None else f"{self.name} ({self.weights.name})"


def parse_models(text: str) -> list[ModelChoice]:
    """``"a,b,c@FILE"`` → the models, checked against the registry (``ValueError`` naming
    the unknown one) and their weight files (``ImageReadError``-style ``path: reason``)."""
    choices: list[ModelChoice] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weights = part.partition("@")
        name = name.strip()
        if name == "dualsr":
            raise ValueError("dualsr trains on each image for minutes and is not run by "
                             "compare: upscale with `dynsr zeroshot` and compare the files")
        get_spec(name)  # an unknown name is said first, with the known ones
        path = Path(weights.strip()) if weights.strip() else None
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: weights file does not exist")
        choice = ModelChoice(name, path)
        if choice not in choices:
            choices.append(choice)
    if not choices:
        raise ValueError(f"no model named in {text!r} (give e.g. --models dyconvsr,ddet-rgb)")
    return choices


@dataclass(frozen=True)
class CompareOptions:
    """How :func:`compare` runs (module doc)."""

    scale: int = 2
    hr_dir: Path | None = None
    from_hr: bool = False
    #: Non-blind models: blur width, kernel (k, k) or LR-grid map; with ``from_hr`` also
    #: the blur applied to make the LR (a width or a kernel only).
    blur: float | torch.Tensor | None = None
    noise: float | torch.Tensor | None = None
    kernels: bool = False  # UDVD's per-pixel kernels on a grid (dynsr.report.kernels)
    #: Non-blind models read the degradation off each LR image (dynsr.blind) instead of
    #: being told ``blur`` / ``noise`` (which, with ``from_hr``, still make the LR).
    blind: bool = False
    blind_method: str = "auto"
    blind_smoothing: float | None = BLIND_SMOOTHING
    blind_isotropic: bool = BLIND_KERNEL == "isotropic"
    blind_correction: int | None = None  # None: dynsr.blind's default
    estimator_weights: Path | None = None
    recursive: bool = False
    device: str = "auto"
    precision: str | None = None
    tile: int | None = None
    preview_size: int = PREVIEW_SIZE
    crop: tuple[int, int, int] | None = None  # x, y, side (SR pixels): zoom and figure
    figure: bool = False  # also write each page's crop comparison (dynsr.report.figure)
    overwrite: bool = False


def find_hr(hr_dir: Path, lr_path: Path, scale: int) -> Path:
    """The HR original of ``lr_path`` in ``hr_dir`` (module doc; ``ValueError`` if none)."""
    if not hr_dir.is_dir():
        raise ValueError(f"{hr_dir}: HR folder does not exist")
    candidates = {c.stem: c for c in list_images([hr_dir])
                  if c.resolve() != lr_path.resolve()}
    stem = lr_path.stem
    base = re.sub(rf"[_-]?(?:x|lr|LR|LRx)?{scale}$", "", stem)
    for name in (stem, base, f"{base}_HR"):
        if name in candidates:
            return candidates[name]
    raise ValueError(f"{lr_path}: no HR image for it in {hr_dir} (looked for "
                     f"{', '.join(sorted({stem, base, base + '_HR'}))} with an image suffix)")


def _slug(text: str, taken: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "image"
    unique, n = slug, 2
    while unique.lower() in taken:
        unique, n = f"{slug}-{n}", n + 1
    taken.add(unique.lower())
    return unique


def _relative_name(path: Path, roots: list[Path]) -> str:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).with_suffix("").as_posix()
    return path.stem


def _modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    # dynsr eval's convention: HR cut at the top-left to a multiple of the scale.
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


def _uint8(pixels: torch.Tensor, alpha: torch.Tensor | None = None) -> np.ndarray:
    """(C, H, W) floats in [0, 1] (+ alpha) → (H, W[, C]) uint8, rounded as files are."""
    planes = pixels if alpha is None else torch.cat([pixels.expand(3, -1, -1)
                                                     if pixels.shape[0] == 1 else pixels,
                                                     alpha])
    array = torch.floor(planes.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    array = array.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


class _PageWriter:
    """Writes one page's image files into the staging folder and builds its results."""

    def __init__(self, folder: Path, slug: str, sr_size: tuple[int, int],
                 preview_size: int) -> None:
        self.folder, self.slug = folder, slug
        (folder / slug).mkdir(parents=True, exist_ok=True)
        width, height = sr_size
        shrink = min(1.0, preview_size / max(width, height))
        self.preview_size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        self.keys: set[str] = set()

    def key(self, label: str) -> str:
        return _slug(label, self.keys)

    def picture(self, key: str, pixels: torch.Tensor, alpha: torch.Tensor | None,
                bit_depth: int = 8) -> Picture:
        rel = f"{self.slug}/{key}.png"
        write_image(self.folder / rel, pixels, alpha, bit_depth=bit_depth)
        return Picture(rel, int(pixels.shape[-1]), int(pixels.shape[-2]))

    def preview(self, key: str, full: Picture, pixels: torch.Tensor,
                alpha: torch.Tensor | None) -> Picture:
        """A downscaled copy when ``full`` is larger than the view (LR images smaller than
        the view are enlarged by the browser, pixel for pixel)."""
        width, height = self.preview_size
        if full.width <= width and full.height <= height:
            return full
        image = Image.fromarray(_uint8(pixels, alpha))
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        rel = f"{self.slug}/{key}.preview.png"
        image.save(self.folder / rel, compress_level=3)
        return Picture(rel, width, height)

    def result(self, label: str, kind: str, pixels: torch.Tensor, alpha: torch.Tensor | None,
               *, key: str | None = None, bit_depth: int = 8, pixel: int = 1,
               **extra) -> Result:
        key = self.key(key or label)
        full = self.picture(key, pixels, alpha, bit_depth)
        return Result(key, label, kind, full, self.preview(key, full, pixels, alpha),
                      pixel=pixel, **extra)


def _load_models(choices: list[ModelChoice], options: CompareOptions,
                 log: Callable[[str], None]) -> list[tuple[ModelChoice, Upscaler]]:
    """The baseline first, then the chosen models; refuses untrained ones."""
    if all(c.name != BASELINE or c.weights is not None for c in choices):
        choices = [ModelChoice(BASELINE), *choices]
    loaded = []
    for choice in choices:
        notes: list[str] = []
        kwargs = {} if options.tile is None else {"tile": options.tile}
        upscaler = load(choice.name, options.scale, device=options.device,
                        precision=options.precision, weights=choice.weights,
                        notify=notes.append, **kwargs)
        if not upscaler.trained:
            raise ValueError(f"{choice.name}: no trained weights for x{options.scale}; give "
                             f"{choice.name}@FILE.safetensors (e.g. a dynsr train result)")
        for note in notes:
            log(f"warning: {note}")
        # One small run first, so that one-off set-up (thread pools, kernel selection) is
        # not counted in the first image's time.
        upscaler.upscale_planes(torch.full((3, 16, 16), 0.5), None,
                                _conditions(upscaler, replace(options, blur=None, noise=None)))
        loaded.append((choice, upscaler))
    return loaded


def _restore(upscaler: Upscaler, lr: torch.Tensor, conditions: dict) -> torch.Tensor:
    """The SR of ``lr`` by a non-blind ``upscaler`` told ``conditions`` (for the correction
    of a blind estimate)."""
    return upscaler.upscale_planes(lr, None, conditions)[0]


def _conditions(upscaler: Upscaler, options: CompareOptions) -> dict:
    if upscaler.needs_degradation:
        return upscaler.conditions(options.blur, options.noise)
    return {}


def _from_hr_kernel(options: CompareOptions) -> torch.Tensor | None:
    """The blur that makes the LR from an HR input (dynsr eval's 15×15 Gaussian)."""
    blur = options.blur
    if blur is None:
        return None
    if isinstance(blur, torch.Tensor) and blur.dim() == 2:
        return blur.to(torch.float64)
    if isinstance(blur, torch.Tensor):
        raise ValueError("with HR inputs the blur that makes the LR must be a width or a "
                         "kernel file, not a per-pixel map")
    return isotropic_gaussian(15, float(blur))


def _read_pair(path: Path, options: CompareOptions
               ) -> tuple[LoadedImage, torch.Tensor | None, str | None]:
    """(the LR image the models get, the HR float64 (C, H, W) or None, the HR's path)."""
    scale = options.scale
    image = read_image(path)
    if options.from_hr:
        hr = _modcrop(image.pixels.to(torch.float64), scale)
        if min(hr.shape[-2:]) < scale:
            raise ValueError(f"{path}: image smaller than the scale")
        if not isinstance(options.noise, float | int | None):
            raise ValueError("with HR inputs the noise must be a number, not a map")
        # dynsr eval's LR: seeded by the file name with its default seed 0; the noisy LR
        # stays float (not clipped or rounded), as the papers test.
        lr = degrade(hr, scale, kernel=_from_hr_kernel(options),
                     noise=float(options.noise or 0.0), seed=zlib.crc32(path.name.encode()))
        loaded = LoadedImage(lr.to(torch.float32), None, 8, image.mode, None, None, path)
        return loaded, hr, str(path)
    if options.hr_dir is None:
        return image, None, None
    hr_path = find_hr(options.hr_dir, path, scale)
    hr = read_image(hr_path).pixels.to(torch.float64)
    want = (image.pixels.shape[0], scale * image.height, scale * image.width)
    if tuple(hr.shape) != want and tuple(_modcrop(hr, scale).shape[-2:]) == want[1:]:
        hr = _modcrop(hr, scale)
    if tuple(hr.shape[-2:]) != want[1:]:
        raise ValueError(f"{hr_path}: HR is {hr.shape[-1]}x{hr.shape[-2]}, not x{scale} of "
                         f"the LR {path} ({image.width}x{image.height})")
    if hr.shape[0] != image.pixels.shape[0]:
        raise ValueError(f"{hr_path}: HR has {hr.shape[0]} channel(s), the LR {path} "
                         f"{image.pixels.shape[0]}")
    return image, hr, str(hr_path)


def _page(path: Path, name: str, slug: str, file: str, folder: Path,
          models: list[tuple[ModelChoice, Upscaler]], options: CompareOptions,
          log: Callable[[str], None]) -> Page:
    scale = options.scale
    lr, hr, hr_source = _read_pair(path, options)
    sr_size = (scale * lr.width, scale * lr.height)
    writer = _PageWriter(folder, slug, sr_size, options.preview_size)
    lr_note = ("made from the HR input: MATLAB bicubic, 8-bit" if options.from_hr
               else "the input")
    results = [writer.result("LR (nearest)", "reference", lr.pixels, lr.alpha, key="lr",
                             bit_depth=lr.bit_depth, pixel=scale, note=lr_note)]
    estimate = None  # --blind: one estimate per image, shared by the non-blind models
    for choice, upscaler in models:
        conditions = _conditions(upscaler, options)
        started = time.perf_counter()
        blind = options.blind and upscaler.needs_degradation
        if blind:
            if estimate is None:
                # Corrected (if at all) by the first non-blind model, shared by the rest.
                estimate = estimate_blind_degradation(
                    lr.pixels, scale, options.blind_method, smoothing=options.blind_smoothing,
                    isotropic=options.blind_isotropic,
                    estimator_weights=options.estimator_weights,
                    restore=functools.partial(_restore, upscaler, lr.pixels.float()),
                    correction=options.blind_correction)
            conditions = estimate.conditions()
        sr = upscaler.upscale_loaded(lr, conditions)
        # The model's time includes the estimate it needed (the first such model pays it).
        seconds = time.perf_counter() - started
        scores = {}
        if hr is not None:
            scores = evaluate_pair(sr.pixels.to(torch.float64), hr, scale)
        note = "" if choice.weights is None else str(choice.weights)
        if upscaler.precision != "fp32" and upscaler.has_parameters:
            note = f"{note}, {upscaler.precision}" if note else upscaler.precision
        result = writer.result(choice.label, "model", sr.pixels, sr.alpha,
                               bit_depth=sr.bit_depth,
                               seconds=round(seconds, 3), note=note,
                               psnr_y=scores.get("psnr_y"), ssim_y=scores.get("ssim_y"))
        if blind:
            kernel, noise, _ = save_degradation(estimate, folder / slug, result.key)
            result.figures += [
                Figure(f"{choice.label}: estimated kernel ({estimate.method}, "
                       f"{estimate.seconds:.2f} s)", f"{slug}/{kernel.name}"),
                Figure(f"{choice.label}: estimated noise σ {estimate.noise:.1f} "
                       f"(white = 75)", f"{slug}/{noise.name}")]
        if options.kernels and dynamic_blocks(upscaler.model):
            samples = capture_kernels(upscaler.model, lr.pixels, scale, conditions,
                                      name=choice.name)
            result.kernels = f"{slug}/{result.key}.kernels.js"
            (folder / result.kernels).write_text(kernels_script(result.key, samples))
        score = "" if not scores else f", PSNR-Y {scores['psnr_y']:.2f} dB"
        log(f"{name}: {choice.label} {seconds:.2f} s{score}")
        results.append(result)
    if hr is not None:
        results.append(writer.result("HR (original)", "reference", hr, None, key="hr",
                                     note=hr_source or ""))
    notes = []
    if options.kernels and not any(r.kernels for r in results):
        notes.append("--kernels: none of the models has dynamic kernels to show (udvd, "
                     "udvd-lite do)")
    return Page(name=name, slug=slug, file=file, source=str(path), scale=scale,
                lr_size=(lr.width, lr.height), sr_size=sr_size, results=results,
                hr_source=hr_source, notes=notes)


def _settings(models: list[tuple[ModelChoice, Upscaler]], options: CompareOptions) -> dict:
    if options.from_hr:
        mode = ("HR inputs; LR made as dynsr eval makes it (top-left crop to a multiple of "
                "the scale, MATLAB bicubic, 8-bit)")
    elif options.hr_dir is not None:
        mode = f"LR inputs; HR originals from {options.hr_dir}"
    else:
        mode = "LR inputs (no HR: no scores)"
    degradation = {}
    if any(u.needs_degradation for _, u in models) or options.from_hr:
        blur = options.blur
        degradation = {
            "blur": None if blur is None else (float(blur) if not isinstance(blur, torch.Tensor)
                                               else f"tensor {tuple(blur.shape)}"),
            "noise": None if options.noise is None else (
                float(options.noise) if not isinstance(options.noise, torch.Tensor)
                else f"tensor {tuple(options.noise.shape)}"),
        }
    first = models[-1][1]
    return {
        "scale": options.scale,
        "mode": mode,
        "models": [{"name": c.name, "label": c.label,
                    "weights": None if c.weights is None else str(c.weights),
                    "precision": u.precision, "tile": u.tile} for c, u in models],
        "device": str(first.device),
        "threads": torch.get_num_threads(),
        "degradation": degradation,
        "metrics": (f"PSNR-Y / SSIM-Y as dynsr eval: {MetricSettings().channel}, SR rounded "
                    f"to 8 bit, {options.scale}-pixel border left out")
        if options.from_hr or options.hr_dir is not None else None,
        "time": "wall time of each model's upscale call on the image (loading the model, a "
                "warm-up run and writing files left out)",
        "kernels": options.kernels,
        "dynsr": __version__,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def compare(inputs: list[Path], models: list[ModelChoice], out: Path,
            options: CompareOptions | None = None, *,
            log: Callable[[str], None] = print) -> Report:
    """Run ``models`` (and the bicubic baseline) on ``inputs`` (files or folders) and write
    the report folder ``out`` (``index.html`` and the images; module doc). ``log`` gets
    one line per model and image, warnings and ``path: reason`` lines for inputs left out.
    """
    options = options or CompareOptions()
    if options.from_hr and options.hr_dir is not None:
        raise ValueError("give HR inputs (from_hr) or an HR folder, not both")
    if options.preview_size < 64:
        raise ValueError(f"preview size must be at least 64 pixels, got {options.preview_size}")
    told = options.blur is not None or options.noise is not None
    if told and not options.from_hr and not any(get_spec(c.name).needs_degradation
                                                for c in models):
        raise ValueError("--blur/--kernel/--noise describe the inputs' degradation for "
                         "non-blind models (udvd, udvd-lite), or make the LR with --from-hr; "
                         "none of the models uses them")
    paths = list_images(inputs, recursive=options.recursive)
    if not paths:
        raise ValueError(f"no images found in {' '.join(map(str, inputs))}")
    if options.hr_dir is not None:
        for path in paths:  # every match before any model runs: a typo fails in a second
            find_hr(options.hr_dir, path, options.scale)
    loaded = _load_models(models, options, log)
    taken: set[str] = {"index", "assets"}
    alone = len(paths) == 1
    pages, failures = [], []
    with staged_folder(out, overwrite=options.overwrite) as folder:
        for n, path in enumerate(paths, 1):
            name = _relative_name(path, inputs)
            slug = _slug(name.replace("/", "-"), taken)
            try:
                log(f"image {n}/{len(paths)}: {path}")
                page = _page(path, name, slug, "index.html" if alone else f"{slug}.html",
                             folder, loaded, options, log)
                if options.figure:
                    page.figures.append(write_crop_figure(folder, page,
                                                          fit_crop(page, options.crop)))
                pages.append(page)
            except (ImageReadError, ValueError) as err:
                message = str(err) if str(path) in str(err) else f"{path}: {err}"
                failures.append(" ".join(message.split()))
                log(f"left out: {failures[-1]}")
        if not pages:
            raise ValueError(failures[0] if len(failures) == 1 else
                             f"no image could be compared ({len(failures)} failed)")
        title = pages[0].name if alone else (
            f"{len(pages)} images" if len(inputs) != 1 else f"{inputs[0].name or inputs[0]}")
        report = Report(title=f"dynsr compare: {title}", pages=pages,
                        settings=_settings(loaded, options), failures=failures)
        write_site(report, folder, crop=options.crop)
    return report
