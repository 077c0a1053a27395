"""DDet on held-out real-like pairs: the Table II ablation at x2, and x2/x3/x4 against bicubic.

No RealSR pairs here, so the test pairs are made from Set14 (never seen in training; Set5
chose the checkpoints) by ``dynsr eval --realistic`` with seed 0: random blur, bicubic,
bilinear or area downscaling, a sub-pixel LR/HR shift, Gaussian or Poisson noise and JPEG,
drawn per image from the same ranges as the training pairs (``dynsr.degrade.realistic``).
PSNR-Y / SSIM-Y, crop = scale, JSON in OUT/ (an existing JSON is not run again).

Rows: ``bicubic``; the ablation at x2 (``kpn7`` = "Plain", ``kpn7-pr`` = "w/ PR",
``kpn7-pr-cdm`` = "w/ CDM", ``ddet-rgb`` = "w/ MDA", full DDet), each from its training run
(``training/ablation_x2_*_cpu/best.safetensors``; full DDet from ``training/ddet_x2_cpu``,
the same recipe); then ``ddet-rgb`` with the shipped weights at every scale. Prints a
Markdown table with the paper's Table II (RealSR x2) beside it.

    python benchmarks/ddet_table.py --data ../shared/data/test/Set14/HR [--scales 2 3 4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cached_eval import cached_eval

ABLATION = [  # (row, model, training run, the paper's Table II PSNR on RealSR x2)
    ("Plain (KPN, K=7)", "kpn7", "training/ablation_x2_kpn7_cpu", 33.43),
    ("w/ PR", "kpn7-pr", "training/ablation_x2_kpn7-pr_cpu", 33.80),
    ("w/ CDM", "kpn7-pr-cdm", "training/ablation_x2_kpn7-pr-cdm_cpu", 34.28),
    ("w/ MDA (DDet)", "ddet-rgb", "training/ddet_x2_cpu", 34.37),
]


def evaluate(out: Path, data: Path, stem: str, model: str, scale: int,
             weights: Path | None = None) -> dict:
    """``dynsr eval --realistic`` of one model (run unless its JSON exists)."""
    return cached_eval(out / f"{stem}.json",
                       ["--model", model, "--scale", str(scale), "--hr", str(data),
                        "--realistic", "--seed", "0",
                        *(["--weights", str(weights)] if weights else [])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/test/Set14/HR"))
    parser.add_argument("--out", type=Path, default=Path("results/ddet"))
    parser.add_argument("--scales", type=int, nargs="*", default=[2, 3, 4],
                        help="scales of the shipped ddet-rgb rows (none: the ablation only)")
    parser.add_argument("--no-ablation", action="store_true")
    args = parser.parse_args()

    lines = []
    if not args.no_ablation:
        bicubic = evaluate(args.out, args.data, "x2_bicubic", "bicubic", 2)
        lines += ["| x2, Set14 real-like | dynsr PSNR / SSIM | gain | paper (RealSR) | gain |",
                  "|---|---|---|---|---|",
                  f"| bicubic | {bicubic['psnr_y']:.2f} / {bicubic['ssim_y']:.4f} | | | |"]
        previous = bicubic["psnr_y"]
        for i, (row, model, run, paper) in enumerate(ABLATION):
            paper_gain = f"{paper - ABLATION[i - 1][3]:+.2f}" if i else ""
            summary = Path(run) / "summary.json"
            if not summary.exists() or not json.loads(summary.read_text())["completed"]:
                lines.append(f"| {row} | not trained yet | | {paper:.2f} | {paper_gain} |")
                continue
            r = evaluate(args.out, args.data, f"x2_ablation_{model}", model, 2,
                         Path(run) / "best.safetensors")
            lines.append(f"| {row} | {r['psnr_y']:.2f} / {r['ssim_y']:.4f} | "
                         f"{r['psnr_y'] - previous:+.2f} | {paper:.2f} | {paper_gain} |")
            previous = r["psnr_y"]
        lines.append("")
    if args.scales:
        lines += ["| scale | bicubic | ddet-rgb (shipped) | gain |", "|---|---|---|---|"]
    for scale in args.scales:
        b = evaluate(args.out, args.data, f"x{scale}_bicubic", "bicubic", scale)
        r = evaluate(args.out, args.data, f"x{scale}_ddet-rgb", "ddet-rgb", scale)
        lines.append(f"| x{scale} | {b['psnr_y']:.2f} / {b['ssim_y']:.4f} | "
                     f"{r['psnr_y']:.2f} / {r['ssim_y']:.4f} | "
                     f"{r['psnr_y'] - b['psnr_y']:+.2f} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
