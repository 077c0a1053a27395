"""``dynsr eval``: PSNR-Y / SSIM-Y of a model on a folder of HR images, as papers measure.

LR images are made on the fly from the HR images by dynsr's degradations (the same flags as
``dynsr degrade``), or read from ``--lr`` (matched to HR images by file name). HR images are
cropped at the top-left to a multiple of the scale first. Scores: Y channel (BT.601 studio
range), SR rounded to 8 bit, ``crop = scale`` border, valid-region Gaussian SSIM, float64,
data-set score = mean of per-image scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dynsr import __version__
from dynsr.cli.options import Degradation, add_degradation_args, modcrop
from dynsr.degrade import load_kernel
from dynsr.hardware import describe_cpu
from dynsr.io import (
    ImageReadError,
    atomic_write_json,
    list_images,
    load_tensor,
    read_image,
    write_image,
)
from dynsr.metrics import MetricSettings, evaluate_pair, kernel_error
from dynsr.models import create, get_spec
from dynsr.models.inference import compute_dtype, prepare_model, upscale_batch
from dynsr.ops import quantize
from dynsr.upscale.weights import (
    file_sha256,
    find_weights,
    load_state_dict,
    weights_hint,
    weights_model_config,
)
from dynsr.zeroshot.blind import estimate_degradation
from dynsr.zeroshot.dualsr import DualSRConfig, zeroshot
from dynsr.zeroshot.kernelgan import CROP_SAMPLING


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="measure PSNR-Y/SSIM-Y of a model on HR images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bicubic",
                   help="model name (see `dynsr models`), or dualsr (zero-shot, trained on "
                        "each LR image)")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="safetensors weights to evaluate (default: the shipped ones)")
    p.add_argument("--hr", nargs="+", type=Path, required=True, metavar="PATH",
                   help="HR images or folders")
    p.add_argument("--lr", type=Path, metavar="DIR",
                   help="folder of given LR images (name = HR name, optionally with a "
                        "x2/_x2/_LR2 suffix); default: made from HR by the degradation flags")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of --hr")
    p.add_argument("--crop", type=int, metavar="PX",
                   help="border pixels left out of the metrics (default: the scale)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--save-sr", type=Path, metavar="DIR", help="also save the SR images (PNG)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: autocast with channels_last (fast path on CPUs with AVX-512 "
                        "BF16); default fp32")
    z = p.add_argument_group("per-image training (dualsr, and blind udvd's KernelGAN)")
    z.add_argument("--iterations", type=int, default=3000,
                   help="DualSR's training iterations per image (default 3000, the paper's)")
    z.add_argument("--lr-step", type=int, metavar="N",
                   help="DualSR's iterations between learning-rate steps (default: a quarter "
                        "of --iterations, 750 for the paper's 3000)")
    z.add_argument("--kernelgan-iterations", type=int, default=3000, metavar="N",
                   help="KernelGAN's iterations for --blind and --kernelgan-kernel (default "
                        "3000, KernelGAN's; its schedule does not scale with them)")
    z.add_argument("--ablation", choices=ABLATIONS,
                   help="drop one loss term (the paper's Table 2)")
    z.add_argument("--blind", action="store_true",
                   help="non-blind models (udvd): estimate each LR image's kernel "
                        "(KernelGAN, --kernelgan-iterations) and noise level instead of being told")
    z.add_argument("--curve-every", type=int, metavar="N",
                   help="dualsr, x2: also score the whole-image SR every N iterations (and at "
                        "the last), with the training seconds so far (the scoring time left "
                        "out): each image's PSNR-vs-time curve goes into the JSON")
    kernel = z.add_mutually_exclusive_group()
    kernel.add_argument("--known-kernel", action="store_true",
                        help="fix G_DN to the true kernel of the degradation (the paper's 'GT "
                             "kernel + DualSR')")
    kernel.add_argument("--kernelgan-kernel", action="store_true",
                        help="two steps: estimate the kernel with KernelGAN "
                             "(--kernelgan-iterations), then train DualSR's upsampler with G_DN "
                             "fixed to it (like the paper's 'KernelGAN + ZSSR (masked interp)' "
                             "row)")
    add_degradation_args(p)
    p.set_defaults(run=run)


ZERO_SHOT = ("dualsr",)
ABLATIONS = {"no-interp": "interp_loss", "no-forward-cycle": "forward_cycle",
             "no-backward-cycle": "backward_cycle"}


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


def load_pair(hr_path: Path, degradation: Degradation,
              lr_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) float64 (C, h, w) / (C, H, W) for one HR file: HR cropped to a multiple of
    the scale; LR read from ``lr_dir`` or made by ``degradation``."""
    hr = modcrop(load_tensor(hr_path).to(torch.float64), degradation.scale)
    if lr_dir is not None:
        image = read_image(find_lr(lr_dir, hr_path, degradation.scale))
        # Exact float64 samples v / maxval, as an LR made on the fly has (not float32's).
        maxval = float(2**image.bit_depth - 1)
        lr = torch.round(image.pixels.to(torch.float64) * maxval) / maxval
    else:
        lr = degradation.apply(hr, hr_path.name)
    return lr, hr


def evaluate_images(
    model: torch.nn.Module,
    hr_paths: list[Path],
    degradation: Degradation,
    *,
    lr_dir: Path | None = None,
    crop: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    conditions: dict | Callable[[Path, torch.Tensor], dict] | None = None,
    save_sr: Path | None = None,
    pairs: dict | None = None,
    desc: str = "eval",
    label: str = "dynsr eval",
    timed: bool = False,
) -> EvalResult:
    """PSNR-Y/SSIM-Y of ``model`` (already in eval mode) on ``hr_paths``: what ``dynsr eval``
    measures, also used by training's validation.

    ``conditions``: keyword arguments for non-blind models (``blur=``, ``noise=``), or a
    function of the HR path and the LR image giving them (a kernel per image, or one
    estimated from the LR image).
    ``pairs``: a dict kept by the caller in which the (LR, HR) pairs are cached between
    calls (validation measures the same images many times). Images that cannot be read or
    measured are skipped with a one-line message (starting with ``label``) and counted in
    ``failures``; ``desc`` labels the progress bar. ``timed``: each row gets ``seconds``,
    from reading the image to its SR (conditions included, scoring left out).
    """
    crop = degradation.scale if crop is None else crop
    rows, failures = [], 0
    for hr_path in tqdm(hr_paths, desc=desc, unit="img", disable=None, leave=False):
        try:
            started = time.perf_counter()
            if pairs is not None and hr_path in pairs:
                lr, hr = pairs[hr_path]
            else:
                lr, hr = load_pair(hr_path, degradation, lr_dir)
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


def true_kernel(hr_path: Path, degradation: Degradation,
                lr_dir: Path | None) -> torch.Tensor | None:
    """The blur kernel that made the LR image of ``hr_path``, when it is known: the
    degradation's, or ``LR_DIR/kernels/NAME.npy`` (as ``dynsr degrade`` writes them)."""
    if lr_dir is None:
        return degradation.kernel(hr_path.name)
    path = lr_dir / "kernels" / f"{hr_path.stem}.npy"
    return load_kernel(path) if path.is_file() else None


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

    ``fixed_kernel``: None (DualSR learns G_DN), ``"true"`` (G_DN fixed to the true kernel)
    or ``"kernelgan"`` (G_DN fixed to KernelGAN's estimate, made first with
    ``kernelgan_iterations`` and the same seed; its seconds are included and its kernel error
    reported).
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
                else None, checkpoint=curve)
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


def _format_table(rows: list[dict], mean: dict) -> str:
    width = max([len("image"), *(len(r["name"]) for r in rows)])
    extra = [key for key in ("kernel_sse", "seconds") if key in mean]
    lines = [f"{'image':<{width}}  {'PSNR-Y':>8}  {'SSIM-Y':>7}"
             + "".join(f"  {key:>10}" for key in extra)]
    for r in [*rows, {"name": "mean", **mean}]:
        if r["name"] == "mean":
            lines.append("-" * len(lines[0]))
        lines.append(f"{r['name']:<{width}}  {r['psnr_y']:8.4f}  {r['ssim_y']:7.5f}"
                     + "".join(f"  {r[key]:10.4g}" if key in r else f"  {'':>10}"
                               for key in extra))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    degradation = Degradation.from_args(args)
    scale = degradation.scale
    crop = scale if args.crop is None else args.crop
    fast = args.precision == "bf16"
    zero_shot = args.model in ZERO_SHOT
    if not zero_shot:
        get_spec(args.model)  # an unknown name is the first thing to say
    if args.blind and scale not in (2, 4):
        raise ValueError("--blind estimates x2 and x4 kernels only")
    fixed_kernel = ("true" if args.known_kernel else
                    "kernelgan" if args.kernelgan_kernel else None)
    if not zero_shot and (args.ablation or fixed_kernel or args.curve_every is not None):
        raise ValueError("--ablation, --known-kernel, --kernelgan-kernel and --curve-every are "
                         "for zero-shot models (dualsr)")
    if args.iterations < 1 or args.kernelgan_iterations < 1:
        raise ValueError(f"--iterations and --kernelgan-iterations must be positive, got "
                         f"{args.iterations} and {args.kernelgan_iterations}")
    if args.lr_step is not None and not zero_shot:
        raise ValueError(f"--lr-step is a positive number of dualsr iterations, got "
                         f"{args.lr_step} for {args.model}")
    hr_paths = list_images(args.hr, recursive=args.recursive)
    if not hr_paths:
        raise ValueError(f"no images found in {' '.join(map(str, args.hr))}")

    start = time.perf_counter()
    if zero_shot:
        weights = model = None
        options = {"iterations": args.iterations, "precision": args.precision,
                   "channels_last": fast, "lr_step": args.lr_step}
        if args.ablation:
            options[ABLATIONS[args.ablation]] = False
        zs_config = DualSRConfig(**options)
        result = evaluate_zeroshot(hr_paths, degradation, zs_config, lr_dir=args.lr,
                                   crop=crop, fixed_kernel=fixed_kernel, seed=args.seed,
                                   save_sr=args.save_sr, curve_every=args.curve_every,
                                   kernelgan_iterations=args.kernelgan_iterations)
    else:
        model, weights = load_evaluated_model(args.model, scale, args.weights)
        model = prepare_model(model, channels_last=fast)
        # Non-blind models (UDVD) are told the degradation that made the LR images.
        conditions: dict | Callable[[Path, torch.Tensor], dict] = {}
        kernel_errors: dict[str, dict] = {}  # --blind: KernelGAN's, where the truth is known
        if get_spec(args.model).needs_degradation:
            if args.blind:
                def estimated(path: Path, lr: torch.Tensor) -> dict:
                    estimate = estimate_degradation(lr.float(), scale,
                                                    iterations=args.kernelgan_iterations)
                    truth = true_kernel(path, degradation, args.lr)
                    if truth is not None:
                        kernel_errors[path.stem] = kernel_error(estimate.kernel, truth)
                    return estimate.conditions()
                conditions = estimated
            elif degradation.per_image:
                conditions = degradation.conditions_of_file
            else:
                conditions = degradation.model_conditions()
        elif args.blind:
            raise ValueError(f"--blind is for non-blind models (udvd); {args.model} is blind")
        result = evaluate_images(model, hr_paths, degradation, lr_dir=args.lr, crop=crop,
                                 precision=args.precision, channels_last=fast,
                                 conditions=conditions, save_sr=args.save_sr,
                                 desc=f"eval {args.model} x{scale}", timed=args.blind)
        for row in result.rows:
            row.update(kernel_errors.get(row["name"], {}))
    rows, failures = result.rows, result.failures
    if not rows:
        raise ValueError("no image could be evaluated")
    mean = result.mean()
    print(f"model {args.model}, x{scale}, Y channel, crop {crop}, {len(rows)} images "
          f"({time.perf_counter() - start:.2f} s)")
    print(_format_table(rows, mean))
    if args.json is not None:
        result = {
            **mean,
            "images": rows,
            "settings": {
                "model": args.model,
                "weights": weights,
                "hr": [str(p) for p in args.hr],
                "lr": str(args.lr) if args.lr else "made from HR (see degradation)",
                "degradation": degradation.settings() if args.lr is None else None,
                "metrics": MetricSettings(crop_border=crop).as_dict(),
                "inference_dtype": ("float32" if model is None
                                    else str(compute_dtype(model)).removeprefix("torch.")),
                **({"blind": {"kernel": "KernelGAN (dynsr.zeroshot.blind)",
                              "iterations": args.kernelgan_iterations,
                              "noise": "patch PCA"}}
                   if args.blind else {}),
                **({"zeroshot": {**dataclasses.asdict(zs_config), "seed": args.seed,
                                 "fixed_kernel": fixed_kernel,
                                 **({"kernelgan_iterations": args.kernelgan_iterations}
                                    if fixed_kernel == "kernelgan" else {}),
                                 "ablation": args.ablation}} if zero_shot else {}),
                **({"crop_sampling": CROP_SAMPLING} if zero_shot or args.blind else {}),
                "precision": args.precision,
                "threads": torch.get_num_threads(),
                "cpu": describe_cpu(),
                "failed_images": failures,
                "dynsr": __version__,
                "torch": torch.__version__,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        }
        atomic_write_json(args.json, result)  # an infinite PSNR is written as null
        print(f"wrote {args.json}")
    return 1 if failures else 0

