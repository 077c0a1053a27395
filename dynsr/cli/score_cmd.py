"""``dynsr score``: PSNR-Y / SSIM-Y of existing SR results against HR images.

The SR images may come from any tool: each is matched to its HR image by name (the HR name,
optionally followed by a separator and a suffix: baby.png, baby_x2.png, baby_SwinIR.png)
and scored by ``dynsr eval``'s protocol: SR rounded to 8 bit, Y channel (BT.601 studio
range), ``--crop`` border pixels left out, valid-region Gaussian SSIM, float64; the data-set
score is the mean of the per-image scores. The crop is the scale by convention: give
``--crop N``, or ``--scale S`` (crop = S, and HR images cropped at the top-left to a
multiple of S first, as benchmarks make their LR images).

Examples:
  dynsr score results/SwinIR/Set5 Set5/HR --scale 4
  dynsr score out/ Set14/HR --crop 4 --json set14_x4.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynsr.cli.eval_cmd import format_table
from dynsr.evaluation import run_record, score_folders
from dynsr.io import atomic_write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score existing SR images against HR images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sr", type=Path, metavar="SR_DIR", help="SR images (a folder or a file)")
    p.add_argument("hr", type=Path, metavar="HR_DIR", help="HR images (a folder or a file)")
    p.add_argument("--crop", type=int, metavar="N",
                   help="border pixels left out of the metrics (default: --scale)")
    p.add_argument("--scale", type=int, metavar="S",
                   help="the upscaling factor: crop = S unless --crop, and HR images cropped "
                        "to a multiple of S")
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.crop is None and args.scale is None:
        raise ValueError("give --crop N (the scale, by convention) or --scale S")
    crop = args.scale if args.crop is None else args.crop
    result = score_folders(args.sr, args.hr, crop=crop, scale=args.scale,
                           recursive=args.recursive)
    mean = result.mean()  # ValueError when no pair could be scored
    print(f"{args.sr} against {args.hr}: Y channel, crop {crop}, {len(result.rows)} images")
    print(format_table(result.rows, mean))
    if args.json is not None:
        settings = {
            "sr": str(args.sr),
            "hr": str(args.hr),
            "matching": "SR name = HR name, optionally + a separator and a suffix",
            "scale": args.scale,
            "hr_crop": (f"top-left crop to a multiple of {args.scale}" if args.scale
                        else "none (sizes must match)"),
            "failed_images": result.failures,
            **run_record(crop),
        }
        atomic_write_json(args.json, {**mean, "images": result.rows, "settings": settings})
        print(f"wrote {args.json}")
    return 1 if result.failures else 0
