"""``dynsr plot``: draw a training run's curves (loss and validation PSNR-Y against
iterations and hours) as a PNG, by default RUN_DIR/curves.png. Needs matplotlib
(``pip install 'dynsr[plot]'``); ``dynsr train`` writes the same plot at the end of a run
when matplotlib is installed.

Examples:
  dynsr plot training/dyconvsr_x2_cpu
  dynsr plot runs/*/
  dynsr plot training/udvd_x2_cpu -o udvd_x2.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynsr.report.curves import plot_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a training run's curves (PNG; needs matplotlib)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="folders written by dynsr train (log.csv, summary.json)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="PNG to write (one run only; default RUN_DIR/curves.png)")
    p.add_argument("--dpi", type=int, default=110, help="resolution (default 110)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.output is not None and len(args.runs) > 1:
        raise ValueError("-o/--output names one file: give one RUN_DIR (or leave -o out)")
    if not 20 <= args.dpi <= 600:
        raise ValueError(f"--dpi must be 20 to 600, got {args.dpi}")
    failed = 0
    for folder in args.runs:
        try:
            written = plot_run(folder, args.output, dpi=args.dpi)
        except ImportError as err:
            print(f"dynsr plot: error: {err}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as err:
            failed += 1
            print(f"dynsr plot: failed: {' '.join(str(err).split())}", file=sys.stderr)
            continue
        print(f"wrote {written}")
    return 1 if failed else 0
