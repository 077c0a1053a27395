"""DualSR on a DIV2KRK-style Set14: the paper's Table 1 rows and Table 2 ablations, x2.

The benchmark set: Set14's HR images, each blurred by its own random DIV2KRK kernel
(``dynsr degrade --random-kernel div2krk --downsample direct --seed 0``: 11x11 anisotropic
Gaussian with multiplicative noise, then every 2nd pixel), written once to OUT/lr with the
true kernels in OUT/lr/kernels. Every row is one ``dynsr eval`` run on those LR files
(PSNR-Y / SSIM-Y, crop 2), its JSON kept as OUT/ROW.json:

* ``bicubic``: MATLAB bicubic x2 (Table 1, 1st category: no kernel knowledge);
* ``dyconvsr``: a network trained on bicubic downscaling (1st category), when weights ship;
* ``dualsr``: DualSR (2nd category: blind, its own kernel estimate); also its kernel error;
* ``dualsr-gt``: DualSR with G_DN fixed to the true kernel (3rd category, "GT kernel +
  DualSR");
* ``no-interp``, ``no-forward-cycle``, ``no-backward-cycle``: Table 2's ablations;
* ``udvd-blind``: UDVD (``udvd-lite``, shipped weights) told KernelGAN's kernel and the
  patch-PCA noise level of each LR image (2nd category: a kernel estimator in front of a
  non-blind network);
* ``udvd-gt``: UDVD told each image's true kernel (3rd category; made on the fly with the
  same flags, which give the same LR images).

    python benchmarks/dualsr_table.py --data ../shared/data/test/Set14/HR --out results/dualsr
        [--rows bicubic dualsr ...] [--iterations 3000] [--precision bf16]

A row whose JSON exists is not run again (delete it to re-run), so the table can be built
over several sessions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROWS = {
    "bicubic": ["--model", "bicubic"],
    "dyconvsr": ["--model", "dyconvsr"],
    "dualsr": ["--model", "dualsr"],
    "dualsr-gt": ["--model", "dualsr", "--known-kernel"],
    "no-interp": ["--model", "dualsr", "--ablation", "no-interp"],
    "no-forward-cycle": ["--model", "dualsr", "--ablation", "no-forward-cycle"],
    "no-backward-cycle": ["--model", "dualsr", "--ablation", "no-backward-cycle"],
    "udvd-blind": ["--model", "udvd-lite", "--blind"],
    "udvd-gt": ["--model", "udvd-lite"],
}
DIV2KRK_FLAGS = ["--random-kernel", "div2krk", "--downsample", "direct", "--seed", "0"]


def dynsr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dynsr", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Set14 HR folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    args = parser.parse_args()
    lr_dir = args.out / "lr"
    if not (lr_dir / "kernels").is_dir():
        dynsr("degrade", str(args.data), "-o", str(lr_dir), "--scale", "2", *DIV2KRK_FLAGS)
    for row in args.rows:
        target = args.out / f"{row}.json"
        if target.exists():
            continue
        per_image = (["--iterations", str(args.iterations)]
                     if "dualsr" in ROWS[row] or "--blind" in ROWS[row] else [])
        # The true kernels reach a non-blind model when the LR is made on the fly.
        source = DIV2KRK_FLAGS if row == "udvd-gt" else ["--lr", str(lr_dir)]
        dynsr("eval", *ROWS[row], "--hr", str(args.data), *source, "--scale", "2",
              "--precision", args.precision, *per_image, "--json", str(target))
    print(f"{'row':<18} {'PSNR-Y':>8} {'SSIM-Y':>7} {'kernel SSE':>10} {'s/image':>8}")
    for row in ROWS:
        path = args.out / f"{row}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        kernel = f"{r['kernel_sse']:10.5f}" if "kernel_sse" in r else f"{'':>10}"
        seconds = f"{r['seconds']:8.1f}" if "seconds" in r else f"{'':>8}"
        print(f"{row:<18} {r['psnr_y']:8.2f} {r['ssim_y']:7.4f} {kernel} {seconds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
