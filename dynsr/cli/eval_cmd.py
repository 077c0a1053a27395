"""``dynsr eval``: PSNR-Y / SSIM-Y of a model on a folder of HR images, as papers measure.

LR images are made on the fly from the HR images by dynsr's degradations (the same flags as
``dynsr degrade``), or read from ``--lr`` (matched to HR images by file name). HR images are
cropped at the top-left to a multiple of the scale first. Scores: Y channel (BT.601 studio
range), SR rounded to 8 bit, ``crop = scale`` border, valid-region Gaussian SSIM, float64,
data-set score = mean of per-image scores. The protocol is :mod:`dynsr.evaluation`; this
module parses the flags and prints.

Real pairs whose LR is already on the HR grid (RealSR, City100; LR and HR of one size):
give ``--lr`` without ``--scale``. Models made for such input (``ddet-real`` and the other
``-real`` names) get the LR as it is; an xS model gets it bicubic-downscaled by S with
``--downscale-lr S``. The border left out is then 8 px for every model. ``dynsr score LR_DIR
HR_DIR --crop 8`` scores the LR itself.

  dynsr eval --model ddet-real --hr pairs/HR --lr pairs/LR --crop 8 --json ddet.json
  dynsr eval --model dyconvsr --downscale-lr 3 --hr pairs/HR --lr pairs/LR --crop 8
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from dynsr.blind import default_correction
from dynsr.cli.options import (
    add_blind_args,
    add_degradation_args,
    check_blind_args,
    degradation_from_args,
)
from dynsr.evaluation import (
    ABLATIONS,
    Conditions,
    Degradation,
    EvalResult,
    blind_conditions,
    default_crop,
    evaluate_images,
    evaluate_zeroshot,
    grid_pairs_settings,
    load_evaluated_model,
    model_conditions,
    on_hr_grid,
    run_record,
)
from dynsr.io import atomic_write_json, list_images
from dynsr.models import get_spec
from dynsr.models.inference import compute_dtype, prepare_model, upscale_batch
from dynsr.zeroshot.api import config_for, default_iterations
from dynsr.zeroshot.dualsr import DualSRConfig
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
                        "x2/_x2/_LR2 suffix); default: made from HR by the degradation flags. "
                        "Without --scale: real pairs, the LR on the HR grid (same size)")
    p.add_argument("--downscale-lr", type=int, choices=(2, 3, 4), metavar="S",
                   help="real pairs (--lr on the HR grid): give the xS model the LR "
                        "bicubic-downscaled by S (MATLAB imresize, 8 bit)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders of --hr")
    p.add_argument("--crop", type=int, metavar="PX",
                   help="border pixels left out of the metrics (default: the scale; 8 for "
                        "--lr images on the HR grid)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--save-sr", type=Path, metavar="DIR", help="also save the SR images (PNG)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: autocast with channels_last (fast path on CPUs with AVX-512 "
                        "BF16); default fp32")
    z = p.add_argument_group("per-image training (dualsr, and blind udvd's KernelGAN)")
    z.add_argument("--iterations", type=int,
                   help="DualSR's training iterations per image (default 3000, the paper's; "
                        "with --learned-kernel the quick recipe's)")
    z.add_argument("--lr-step", type=int, metavar="N",
                   help="DualSR's iterations between learning-rate steps (default: a quarter "
                        "of --iterations, 750 for the paper's 3000)")
    z.add_argument("--kernelgan-iterations", type=int, default=3000, metavar="N",
                   help="KernelGAN's iterations for --blind and --kernelgan-kernel (default "
                        "3000, KernelGAN's; its schedule does not scale with them)")
    z.add_argument("--ablation", choices=ABLATIONS,
                   help="drop one loss term (the paper's Table 2)")
    add_blind_args(p.add_argument_group("blind SR with non-blind models (udvd)"),
                   kernelgan_iterations_flag=False)
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
    kernel.add_argument("--learned-kernel", action="store_true",
                        help="two steps: read the kernel with dynsr's learned degradation "
                             "estimator, then train DualSR's upsampler with G_DN fixed to it "
                             "(dynsr zeroshot --learned-kernel)")
    add_degradation_args(p, scale_help="downscaling factor; leave it out for --lr images on "
                                       "the HR grid (real pairs)")
    p.set_defaults(run=run)


ZERO_SHOT = ("dualsr",)


def format_table(rows: list[dict], mean: dict) -> str:
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


def _resolve_scale(args: argparse.Namespace) -> int:
    """The model's scale: --scale; --downscale-lr's; or 1 for --lr images on the HR grid."""
    if args.downscale_lr is not None:
        if args.lr is None:
            raise ValueError("--downscale-lr downscales given LR images that are on the HR grid "
                             "(--lr DIR)")
        if args.scale not in (None, args.downscale_lr):
            raise ValueError(f"--scale {args.scale} with --downscale-lr {args.downscale_lr}: "
                             f"the model's scale is the downscaling factor; give one of them")
        return args.downscale_lr
    if args.scale is not None:
        return args.scale
    if args.lr is None:
        raise ValueError("--scale is required, unless --lr gives LR images on the HR grid "
                         "(real pairs)")
    return 1


def _check_flags(args: argparse.Namespace, scale: int, zero_shot: bool) -> None:
    if zero_shot and on_hr_grid(scale, args.lr, args.downscale_lr or 1):
        raise ValueError(f"{args.model} trains on LR-size images: give --scale and LR images "
                         f"at the LR size (not --downscale-lr or pairs on the HR grid)")
    if not zero_shot:
        spec = get_spec(args.model)  # an unknown name is the first thing to say
        if scale == 1 and 1 not in spec.scales:
            raise ValueError(f"{args.model} upscales LR-size images (x"
                             f"{', x'.join(map(str, spec.scales))}), and these LR images are "
                             f"on the HR grid: give --downscale-lr S to give it them "
                             f"bicubic-downscaled by S, or use a model for such pairs "
                             f"(ddet-real)")
    check_blind_args(args, scale)
    fixed = args.known_kernel or args.kernelgan_kernel or args.learned_kernel
    if not zero_shot and (args.ablation or fixed or args.curve_every is not None):
        raise ValueError("--ablation, --known-kernel, --kernelgan-kernel, --learned-kernel and "
                         "--curve-every are for zero-shot models (dualsr)")
    if args.iterations is None:  # the paper's 3000, or the quick recipe's
        args.iterations = default_iterations(None, args.learned_kernel)
    if args.iterations < 1 or args.kernelgan_iterations < 1:
        raise ValueError(f"--iterations and --kernelgan-iterations must be positive, got "
                         f"{args.iterations} and {args.kernelgan_iterations}")
    if args.lr_step is not None and not zero_shot:
        raise ValueError(f"--lr-step is a positive number of dualsr iterations, got "
                         f"{args.lr_step} for {args.model}")
    if args.blind and zero_shot or args.blind and not get_spec(args.model).needs_degradation:
        raise ValueError(f"--blind is for non-blind models (udvd); {args.model} is blind")


def _blind_settings(args: argparse.Namespace) -> dict:
    if args.blind_method == "kernelgan":
        return {"method": "kernelgan", "kernel": "KernelGAN (dynsr.zeroshot.blind)",
                "iterations": args.kernelgan_iterations, "noise": "patch PCA",
                "told": args.blind_kernel}
    weights = args.estimator_weights
    return {"method": "learned", "estimator": "dynsr.models.degradation_estimator",
            "weights": str(weights) if weights else "shipped",
            "smoothing": args.blind_smoothing, "told": args.blind_kernel,
            "correction": (args.blind_correction if args.blind_correction is not None
                           else default_correction(args.scale)
                           if args.blind_kernel == "isotropic" else 0)}


def _zeroshot_config(args: argparse.Namespace) -> DualSRConfig:
    """DualSR's settings: those of ``dynsr zeroshot`` (:func:`config_for`, the quick
    recipe's crops with ``--learned-kernel``) in ``--precision``, with the options given."""
    config = config_for(args.iterations, args.precision, learned_kernel=args.learned_kernel)
    options = {"lr_step": args.lr_step}
    if args.ablation:
        options[ABLATIONS[args.ablation]] = False
    return dataclasses.replace(config, **options)


def _evaluate_model(args: argparse.Namespace, degradation: Degradation, hr_paths: list[Path],
                    crop: int) -> tuple[EvalResult, dict | None, str]:
    """The supervised model's scores, its weights' record and its inference dtype."""
    fast = args.precision == "bf16"
    model, weights = load_evaluated_model(args.model, degradation.scale, args.weights)
    model = prepare_model(model, channels_last=fast)
    kernel_errors: dict[str, dict] = {}  # --blind: the estimate's, where the truth is known
    conditions: Conditions = (
        blind_conditions(degradation, args.lr, method=args.blind_method,
                         smoothing=args.blind_smoothing,
                         isotropic=args.blind_kernel == "isotropic",
                         estimator_weights=args.estimator_weights,
                         iterations=args.kernelgan_iterations,
                         save_dir=args.save_degradation, kernel_errors=kernel_errors,
                         restore_with=lambda lr, told: upscale_batch(
                             model, lr[None], precision=args.precision, channels_last=fast,
                             **told)[0].clamp(0.0, 1.0),
                         correction=args.blind_correction)
        if args.blind else model_conditions(args.model, degradation))
    result = evaluate_images(model, hr_paths, degradation, lr_dir=args.lr, crop=crop,
                             precision=args.precision, channels_last=fast,
                             conditions=conditions, save_sr=args.save_sr,
                             desc=f"eval {args.model} x{degradation.scale}", timed=args.blind,
                             lr_downscale=args.downscale_lr or 1)
    for row in result.rows:
        row.update(kernel_errors.get(row["name"], {}))
    return result, weights, str(compute_dtype(model)).removeprefix("torch.")


def run(args: argparse.Namespace) -> int:
    args.scale = _resolve_scale(args)
    degradation = degradation_from_args(args)
    scale = degradation.scale
    downscale = args.downscale_lr or 1
    grid = on_hr_grid(scale, args.lr, downscale)
    crop = default_crop(scale, args.lr, downscale) if args.crop is None else args.crop
    zero_shot = args.model in ZERO_SHOT
    _check_flags(args, scale, zero_shot)
    fixed_kernel = ("true" if args.known_kernel else
                    "kernelgan" if args.kernelgan_kernel else
                    "learned" if args.learned_kernel else None)
    hr_paths = list_images(args.hr, recursive=args.recursive)
    if not hr_paths:
        raise ValueError(f"no images found in {' '.join(map(str, args.hr))}")

    start = time.perf_counter()
    weights, dtype = None, "float32"
    if zero_shot:
        zs_config = _zeroshot_config(args)
        result = evaluate_zeroshot(hr_paths, degradation, zs_config, lr_dir=args.lr,
                                   crop=crop, fixed_kernel=fixed_kernel, seed=args.seed,
                                   save_sr=args.save_sr, curve_every=args.curve_every,
                                   kernelgan_iterations=args.kernelgan_iterations)
    else:
        result, weights, dtype = _evaluate_model(args, degradation, hr_paths, crop)
    rows, failures = result.rows, result.failures
    mean = result.mean()
    given = ("" if not grid else f", LR on the HR grid downscaled by {downscale}"
             if downscale > 1 else ", LR on the HR grid as it is")
    print(f"model {args.model}, x{scale}{given}, Y channel, crop {crop}, {len(rows)} images "
          f"({time.perf_counter() - start:.2f} s)")
    print(format_table(rows, mean))
    if args.json is not None:
        zeroshot_settings = {
            **dataclasses.asdict(zs_config), "seed": args.seed, "fixed_kernel": fixed_kernel,
            **({"kernelgan_iterations": args.kernelgan_iterations}
               if fixed_kernel == "kernelgan" else {}),
            "ablation": args.ablation} if zero_shot else None
        settings = {
            "model": args.model,
            "weights": weights,
            "hr": [str(p) for p in args.hr],
            "lr": str(args.lr) if args.lr else "made from HR (see degradation)",
            "degradation": degradation.settings() if args.lr is None else None,
            **({"pairs": grid_pairs_settings(scale, downscale)} if grid else {}),
            "inference_dtype": dtype,
            **({"blind": _blind_settings(args)} if args.blind else {}),
            **({"zeroshot": zeroshot_settings} if zero_shot else {}),
            **({"crop_sampling": CROP_SAMPLING}
               if zero_shot or args.blind and args.blind_method == "kernelgan" else {}),
            "precision": args.precision,
            "failed_images": failures,
            **run_record(crop),
        }
        atomic_write_json(args.json, {**mean, "images": rows, "settings": settings})
        print(f"wrote {args.json}")  # (an infinite PSNR is written as null)
    return 1 if failures else 0
