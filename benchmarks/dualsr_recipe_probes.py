"""Probes for DualSR's quick recipe: the learned estimator's kernel, then the upsampler alone.

With G_DN fixed to the kernel dynsr's learned degradation estimator reads off the LR image
(``dynsr zeroshot --learned-kernel``), what is left to train is G_UP, and its work per
iteration is its crops: batch x HR crop². This script scores variants of that recipe that
differ in iterations, HR crop and batch, on a DIV2KRK-style set of LR images with their
true kernels (``dynsr degrade HR -o LR --scale 2 --random-kernel div2krk --downsample direct
--seed 0``), one variant at a time, seed 0, each image's PSNR-Y / SSIM-Y (crop 2, 8-bit
rounding), seconds and PSNR curve; the result is one JSON line per image and variant, so a
run can be stopped and resumed (done lines are skipped).

"Work" is iterations x batch x HR crop² relative to 300 iterations of the paper's 2 x 128²
(smaller images have smaller crops: DualSR shrinks a crop that does not fit).

    python benchmarks/dualsr_recipe_probes.py --lr LR_DIR --hr HR_DIR --out probes.jsonl \\
        --variants 300:128:2 1200:64:2 2130:48:2 [--precision bf16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from dynsr.evaluation import Degradation, evaluate_zeroshot
from dynsr.hardware import timing_context
from dynsr.io import list_images
from dynsr.zeroshot.api import config_for


def parse_variant(text: str) -> tuple[int, int, int]:
    """``ITERATIONS:HR_CROP:BATCH``."""
    iterations, crop, batch = (int(v) for v in text.split(":"))
    return iterations, crop, batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr", type=Path, required=True, help="LR folder (with kernels/)")
    parser.add_argument("--hr", type=Path, required=True, help="HR folder")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file (appended)")
    parser.add_argument("--variants", nargs="+", type=parse_variant, required=True,
                        metavar="ITERATIONS:HR_CROP:BATCH")
    parser.add_argument("--precision", choices=("fp32", "bf16"))
    args = parser.parse_args()
    done = set()
    if args.out.exists():
        done = {(r["iterations"], r["hr_crop"], r["batch"], r["name"])
                for r in map(json.loads, args.out.read_text().splitlines())}
    context = timing_context()
    for iterations, crop, batch in args.variants:
        config = dataclasses.replace(
            config_for(iterations, args.precision, learned_kernel=True), hr_crop=crop,
            batch=batch)
        scores = []
        for lr_path in list_images([args.lr]):
            if (iterations, crop, batch, lr_path.stem) in done:
                continue
            # One image per call, so that each line is written as soon as it is scored;
            # what dynsr eval --model dualsr --learned-kernel runs (LR and true kernel from
            # the folder).
            result = evaluate_zeroshot([args.hr / lr_path.name], Degradation(2), config,
                                       lr_dir=args.lr, fixed_kernel="learned",
                                       curve_every=max(iterations // 10, 1),
                                       label="dualsr_recipe_probes")
            if not result.rows:
                continue
            row = {"iterations": iterations, "hr_crop": crop, "batch": batch,
                   "work": round(iterations * batch * crop**2 / (300 * 2 * 128**2), 3),
                   **result.rows[0], "precision": config.precision,
                   "threads": torch.get_num_threads(), "cpu": context}
            with args.out.open("a") as stream:
                stream.write(json.dumps(row) + "\n")
            scores.append(row["psnr_y"])
            print(f"{iterations}:{crop}:{batch} {row['name']} PSNR-Y {row['psnr_y']:.3f} "
                  f"{row['seconds']:.1f} s", flush=True)
        if scores:
            print(f"{iterations}:{crop}:{batch} mean of {len(scores)} new: "
                  f"{sum(scores) / len(scores):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
