"""``dynsr compare``: look at several models on your photos, in a browser.

Writes a self-contained folder OUT: ``index.html`` plus the images, the script and the style
sheet (no server, nothing from the internet; open index.html). Per image: a before/after
view of any two results with a slider (arrow keys too), synchronized pixel-exact zoom
crops of every result (click to choose the spot), the time of each model and, with HR
images, PSNR-Y / SSIM-Y as ``dynsr eval`` measures them. The LR (nearest-neighbour
enlarged) and MATLAB bicubic are always shown. Several images get an index page.

Inputs are LR photos. For scores, either give their originals with ``--hr DIR`` (matched by
name as ``dynsr eval --lr`` does), or give HR images with ``--from-hr``: their LR is made
as ``dynsr eval`` makes it (crop to a multiple of the scale, MATLAB bicubic, 8-bit; with
--blur / --noise also blurred and noisy, and UDVD is told so).

Examples:
  dynsr compare photo.jpg --models dyconvsr,ddet-rgb -o cmp/
  dynsr compare lr/ --hr hr/ --models dyconvsr,ddet-rgb,udvd-lite --scale 4 -o cmp/
  dynsr compare hr/ --from-hr --models dyconvsr,udvd-lite --blur 1.3 --noise 15 --kernels -o cmp/
  dynsr compare photo.png --models dyconvsr,dyconvsr@runs/mine/best.safetensors -o cmp/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynsr.cli.options import (
    add_blind_args,
    add_told_degradation_args,
    check_blind_args,
    told_degradation,
)
from dynsr.models.inference import PRECISIONS
from dynsr.report.compare import PREVIEW_SIZE, CompareOptions, compare, parse_models

_PROG = "dynsr compare"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare models on photos in an HTML report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders")
    p.add_argument("--models", required=True, metavar="A,B,...",
                   help="models to compare, as `dynsr models` names them (bicubic is always "
                        "added); NAME@FILE for other weights, e.g. a dynsr train result")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                   help="report folder (written whole at the end; see --overwrite)")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4),
                   help="upscaling factor (default 2)")
    hr = p.add_mutually_exclusive_group()
    hr.add_argument("--hr", type=Path, metavar="DIR",
                    help="folder of the inputs' HR originals, matched by name: gives "
                         "PSNR-Y / SSIM-Y")
    hr.add_argument("--from-hr", action="store_true",
                    help="the inputs are HR images: make their LR as dynsr eval does and "
                         "score against them")
    p.add_argument("--kernels", action="store_true",
                   help="UDVD models: show the per-pixel kernels of each dynamic block at a "
                        "clicked point (sampled on a grid, about 90 kB per image and model)")
    p.add_argument("--figure", action="store_true",
                   help="also write each image's crop comparison as NAME/crops.png")
    p.add_argument("--crop", metavar="X,Y,SIZE",
                   help="the square (SR pixels, top-left corner and side) the zoom opens on "
                        "and --figure shows (default: the middle)")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT folder")
    p.add_argument("--preview-size", type=int, default=PREVIEW_SIZE, metavar="PX",
                   help=f"longer side of the before/after previews (default {PREVIEW_SIZE}; "
                        "the zoom always shows full resolution)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (default): cuda, else mps, else cpu; or cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="as dynsr upscale (default: bf16 where the CPU or GPU has it, else "
                        "fp32); scores of bf16 runs can differ from dynsr eval's fp32 by "
                        "up to 0.1 dB")
    p.add_argument("--tile", type=int, metavar="N", help="tile side in LR pixels, as upscale")
    add_told_degradation_args(p.add_argument_group(
        "degradation (non-blind models: udvd, udvd-lite; with --from-hr also how the LR is "
        "made)"))
    add_blind_args(p.add_argument_group("blind SR (non-blind models read the degradation off "
                                        "each image; its kernel and noise map are shown)"),
                   kernelgan_iterations_flag=False, pictures_flag=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")
    p.set_defaults(run=run)


def _parse_crop(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, side = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--crop must be X,Y,SIZE (three integers), got {text!r}") from None
    if x < 0 or y < 0 or side < 1:
        raise ValueError(f"--crop needs X, Y >= 0 and SIZE >= 1, got {text!r}")
    return x, y, side


def run(args: argparse.Namespace) -> int:
    def report(message: str) -> None:
        print(f"{_PROG}: {message}", file=sys.stderr, flush=True)

    models = parse_models(args.models)
    if args.tile is not None and args.tile < 16:
        raise ValueError(f"--tile must be at least 16, got {args.tile}")
    check_blind_args(args, args.scale)
    blur, noise = told_degradation(args)
    options = CompareOptions(
        scale=args.scale, hr_dir=args.hr, from_hr=args.from_hr, blur=blur,
        noise=noise, kernels=args.kernels,
        recursive=args.recursive, device=args.device, precision=args.precision,
        tile=args.tile, preview_size=args.preview_size, crop=_parse_crop(args.crop),
        figure=args.figure, overwrite=args.overwrite, blind=args.blind,
        blind_method=args.blind_method, blind_smoothing=args.blind_smoothing,
        blind_isotropic=args.blind_kernel == "isotropic",
        blind_correction=args.blind_correction, estimator_weights=args.estimator_weights)
    if args.blind and not args.from_hr and (args.blur is not None or args.kernel is not None
                                            or args.noise is not None):
        raise ValueError("--blind estimates the degradation: --blur/--kernel/--noise only "
                         "describe how --from-hr makes the LR")
    result = compare(args.inputs, models, args.output, options, log=report)
    pages = len(result.pages)
    print(f"wrote {args.output / 'index.html'} ({pages} image{'s' if pages != 1 else ''}, "
          f"{len(result.failures)} left out)")
    return 1 if result.failures else 0
