"""Reproduce the published bicubic table (Set5, Set14; x2, x3, x4) with ``dynsr eval``.

Runs ``dynsr eval --model bicubic`` on each set and scale, writes the JSON results to
``results/bicubic/`` and prints a Markdown table beside the published values
(CONVENTIONS.md: MATLAB bicubic, Y channel, crop = scale), with the differences.

    python benchmarks/bicubic_table.py --data ../shared/data/test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cached_eval import run_dynsr

PUBLISHED = {  # (PSNR, SSIM), CONVENTIONS.md
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/test"),
                        help="folder holding Set5/HR and Set14/HR")
    parser.add_argument("--out", type=Path, default=Path("results/bicubic"))
    args = parser.parse_args()

    lines = ["| set | scale | dynsr PSNR | published | Δ dB | dynsr SSIM | published | Δ |",
             "|---|---|---|---|---|---|---|---|"]
    worst_psnr = worst_ssim = 0.0
    for (name, scale), (pub_psnr, pub_ssim) in PUBLISHED.items():
        out = args.out / f"{name}_x{scale}.json"
        run_dynsr(["eval", "--model", "bicubic", "--scale", str(scale),
                   "--hr", str(args.data / name / "HR"), "--json", str(out)])
        res = json.loads(out.read_text())
        d_psnr, d_ssim = res["psnr_y"] - pub_psnr, res["ssim_y"] - pub_ssim
        worst_psnr, worst_ssim = max(worst_psnr, abs(d_psnr)), max(worst_ssim, abs(d_ssim))
        lines.append(f"| {name} | x{scale} | {res['psnr_y']:.2f} | {pub_psnr:.2f} | "
                     f"{d_psnr:+.3f} | {res['ssim_y']:.4f} | {pub_ssim:.4f} | {d_ssim:+.4f} |")
    print("\n".join(lines))
    print(f"\nlargest |Δ|: {worst_psnr:.3f} dB PSNR, {worst_ssim:.4f} SSIM "
          f"(targets: 0.03 dB, 0.002)")
    return 0 if worst_psnr <= 0.03 and worst_ssim <= 0.002 else 1


if __name__ == "__main__":
    raise SystemExit(main())
