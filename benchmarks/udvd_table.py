"""UDVD's Tables 2, 3 and 4 with dynsr's weights, on Set5 / Set14 at x2 / x3 / x4.

* Table 2 (``--table 2``, the default): blur widths 0.2 / 1.3 / 2.6 × noise 15 / 50.
* Table 3 (``--table 3``): spatially variant degradations, rising linearly from left to
  right: width 0.2 → 2 with noise 5; width 0.2 with noise 5 → 50; both
  (``dynsr eval --blur 0.2:2 --noise 5:50``).
* Table 4 (``--table 4``): noise-free, widths 0.2 / 1.3 / 2.6. The paper trains a separate
  noise-free UDVD for it and compares with SRMDNF; dynsr scores its one shipped model (trained
  for noise 0-75), told noise 0.

Each cell is one ``dynsr eval --model udvd-lite --scale S --blur W --noise N`` run (isotropic
Gaussian blur of width W, 15x15, then MATLAB bicubic downscaling, then Gaussian noise of
sigma N/255 with seed 0, the noisy LR kept float, not clipped or rounded, as
SRMD and UDVD test; PSNR-Y / SSIM-Y, crop = scale) with the shipped weights
(or ``--weights`` files), its JSON kept as OUT/xS_SET_bW_nN.json; an existing JSON is not run
again. MATLAB bicubic on the same LR images (OUT/bicubic_xS_SET_bW_nN.json) is the baseline.
Prints a Markdown table beside the paper's SRMD and UDVD rows (PSNR only: the tables give no
SSIM). A ramp's file name writes ``0.2:2`` as ``0.2-2``.

    python benchmarks/udvd_table.py --data ../shared/data/test [--table 2|3|4]
        [--scales 2 3 4] [--model udvd-wide] [--blind]
        [--weights 2=training/udvd_x2_cpu/best.safetensors]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cached_eval import cached_eval

CONDITIONS = [(0.2, 15), (1.3, 15), (2.6, 15), (0.2, 50), (1.3, 50), (2.6, 50)]
# Table 3, PSNR-Y: {(blur, noise) as dynsr eval flags: {(set, scale): (SRMD, UDVD)}}.
PAPER_TABLE3 = {
    ("0.2:2", "5"): {("Set5", 2): (33.56, 33.77), ("Set5", 3): (31.67, 32.00),
                     ("Set5", 4): (30.01, 30.63), ("Set14", 2): (29.79, 30.74),
                     ("Set14", 3): (28.06, 28.93), ("Set14", 4): (26.77, 27.76)},
    ("0.2", "5:50"): {("Set5", 2): (29.70, 30.78), ("Set5", 3): (27.80, 28.61),
                      ("Set5", 4): (26.53, 27.15), ("Set14", 2): (28.02, 28.90),
                      ("Set14", 3): (26.20, 26.85), ("Set14", 4): (24.98, 25.62)},
    ("0.2:2", "5:50"): {("Set5", 2): (28.53, 29.37), ("Set5", 3): (27.06, 27.74),
                        ("Set5", 4): (26.05, 26.57), ("Set14", 2): (26.97, 27.63),
                        ("Set14", 3): (25.62, 26.28), ("Set14", 4): (24.66, 25.23)},
}
# Table 4 (noise-free), PSNR-Y: {(blur, noise): {(set, scale): (SRMDNF, noise-free UDVD)}}.
PAPER_TABLE4 = {
    ("0.2", "0"): {("Set5", 2): (37.79, 38.01), ("Set5", 3): (34.13, 34.49),
                   ("Set5", 4): (31.96, 32.31), ("Set14", 2): (33.33, 33.64),
                   ("Set14", 3): (30.04, 30.44), ("Set14", 4): (28.35, 28.78)},
    ("1.3", "0"): {("Set5", 2): (37.44, 37.36), ("Set5", 3): (34.17, 34.52),
                   ("Set5", 4): (32.00, 32.37), ("Set14", 2): (33.20, 33.39),
                   ("Set14", 3): (30.08, 30.50), ("Set14", 4): (28.42, 28.85)},
    ("2.6", "0"): {("Set5", 2): (34.12, 33.74), ("Set5", 3): (33.02, 33.15),
                   ("Set5", 4): (31.77, 31.99), ("Set14", 2): (30.25, 30.08),
                   ("Set14", 3): (29.33, 29.58), ("Set14", 4): (28.26, 28.55)},
}
# The UDVD paper's Table 2, PSNR-Y: {(width, noise): {(set, scale): (SRMD, UDVD)}}.
PAPER = {
    (0.2, 15): {("Set5", 2): (32.76, 32.96), ("Set5", 3): (30.43, 30.68),
                ("Set5", 4): (28.79, 29.04), ("Set14", 2): (30.14, 30.43),
                ("Set14", 3): (27.82, 28.14), ("Set14", 4): (26.48, 26.82)},
    (1.3, 15): {("Set5", 2): (30.98, 31.16), ("Set5", 3): (29.43, 29.67),
                ("Set5", 4): (28.21, 28.43), ("Set14", 2): (28.34, 28.63),
                ("Set14", 3): (27.05, 27.36), ("Set14", 4): (26.06, 26.37)},
    (2.6, 15): {("Set5", 2): (28.48, 28.73), ("Set5", 3): (27.55, 27.80),
                ("Set5", 4): (26.82, 26.98), ("Set14", 2): (26.18, 26.48),
                ("Set14", 3): (25.58, 25.87), ("Set14", 4): (25.06, 25.33)},
    (0.2, 50): {("Set5", 2): (28.51, 28.63), ("Set5", 3): (26.48, 26.65),
                ("Set5", 4): (25.18, 25.34), ("Set14", 2): (26.70, 27.00),
                ("Set14", 3): (25.01, 25.32), ("Set14", 4): (23.95, 24.24)},
    (1.3, 50): {("Set5", 2): (27.43, 27.54), ("Set5", 3): (25.82, 25.99),
                ("Set5", 4): (24.77, 24.92), ("Set14", 2): (25.63, 25.88),
                ("Set14", 3): (24.47, 24.75), ("Set14", 4): (23.64, 23.91)},
    (2.6, 50): {("Set5", 2): (25.85, 26.00), ("Set5", 3): (24.75, 24.85),
                ("Set5", 4): (23.98, 24.11), ("Set14", 2): (24.32, 24.60),
                ("Set14", 3): (23.53, 23.81), ("Set14", 4): (22.98, 23.23)},
}


def evaluate(data: Path, out: Path, name: str, scale: int, width: str, noise: str,
             weights: Path | None, model: str = "udvd-lite", blind: bool = False,
             correction: int | None = None) -> dict:
    """One cell: the JSON of ``dynsr eval`` (run unless it exists); ``width`` and ``noise``
    as ``dynsr eval``'s flags take them (a number or a LEFT:RIGHT ramp); ``blind``: UDVD is
    not told the degradation but reads it off each LR (``--blind``, its defaults, or
    ``correction`` rounds of correction: files ``blind-cN_...``)."""
    blind_name = "blind_" if correction is None else f"blind-c{correction}_"
    prefix = ("" if model == "udvd-lite" else f"{model}_") + (blind_name if blind else "")
    tag = f"b{width}_n{noise}".replace(":", "-")
    return cached_eval(out / f"{prefix}x{scale}_{name}_{tag}.json",
                       ["--model", model, "--scale", str(scale), "--hr",
                        str(data / name / "HR"), "--blur", width, "--noise", noise,
                        *(["--weights", str(weights)] if weights else []),
                        *(["--blind"] if blind else []),
                        *(["--blind-correction", str(correction)]
                          if blind and correction is not None else [])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/test"),
                        help="folder holding Set5/HR and Set14/HR")
    parser.add_argument("--out", type=Path, default=Path("results/udvd"))
    parser.add_argument("--table", type=int, choices=(2, 3, 4), default=2,
                        help="which of the paper's tables (default 2)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--model", default="udvd-lite", choices=("udvd-lite", "udvd-wide"),
                        help="the network scored (default udvd-lite; files of another "
                             "start with its name)")
    parser.add_argument("--weights", nargs="+", default=[], metavar="S=FILE",
                        help="weights per scale instead of the shipped ones")
    parser.add_argument("--blind", action="store_true",
                        help="also run UDVD blind (--blind: the degradation read off each LR) "
                             "and print its cells beside the told ones")
    parser.add_argument("--blind-correction", type=int, metavar="N",
                        help="blind with N rounds of correction instead of the default")
    args = parser.parse_args()
    weights = {int(s): Path(f) for s, f in (w.split("=", 1) for w in args.weights)}

    paper = {2: {(str(w), f"{n:g}"): cells for (w, n), cells in PAPER.items()},
             3: PAPER_TABLE3, 4: PAPER_TABLE4}[args.table]
    srmd_name = "SRMDNF" if args.table == 4 else "SRMD"
    blind_head = "blind (vs told) | " if args.blind else ""
    lines = [f"| width | noise | scale | Set5 {blind_head}dynsr | bicubic | {srmd_name} | UDVD "
             f"| Set14 {blind_head}dynsr | bicubic | {srmd_name} | UDVD |",
             "|---|---|---|" + "---|" * (4 + bool(args.blind)) * 2]
    for width, noise in paper:
        for scale in args.scales:
            cells = []
            for name in ("Set5", "Set14"):
                r = evaluate(args.data, args.out, name, scale, width, noise,
                             weights.get(scale), args.model)
                b = evaluate(args.data, args.out, name, scale, width, noise, None, "bicubic")
                srmd, udvd = paper[(width, noise)][(name, scale)]
                if args.blind:
                    blind = evaluate(args.data, args.out, name, scale, width, noise,
                                     weights.get(scale), args.model, blind=True,
                                     correction=args.blind_correction)
                    cells.append(f"{blind['psnr_y']:.2f} ({blind['psnr_y'] - r['psnr_y']:+.2f})")
                cells.append(f"{r['psnr_y']:.2f} / {r['ssim_y']:.4f} | "
                             f"{b['psnr_y']:.2f} / {b['ssim_y']:.4f} | {srmd:.2f} | "
                             f"{udvd:.2f}")
            lines.append(f"| {width.replace(':', ' → ')} | {noise.replace(':', ' → ')} | "
                         f"x{scale} | {' | '.join(cells)} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
