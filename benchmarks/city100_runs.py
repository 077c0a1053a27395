"""Train the real-pair models on City100 iPhone X, one run after another, resumable.

The five recipes of docs/real_pairs.md, in this order: the paper's DDet and the plain KPN
first (the two rows the issue compares), then the other Table II rows, then the optional
ddet-rgb fine-tuning. Each runs as ``dynsr train NAME train.threads=1 --out training/NAME
--resume`` (one thread: the machine's other core is busy); a run whose summary.json says it
completed is skipped, a stopped one continues from its state.pt. Stop with Ctrl-C (the run
saves its state) and start this script again to go on. A run that fails stops the script.

    python benchmarks/city100_runs.py                 # all five, in turn
    python benchmarks/city100_runs.py --only kpn7_real_cpu --dry-run

The data folder comes first: ``python benchmarks/prepare_city100.py --source CameraSR``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("ddet_real_cpu", "kpn7_real_cpu", "kpn7-pr_real_cpu", "kpn7-pr-cdm_real_cpu",
        "ddet-rgb_real_cpu")


def completed(out: Path) -> bool:
    """Whether the run in ``out`` finished its schedule (its summary.json says so)."""
    try:
        return bool(json.loads((out / "summary.json").read_text())["completed"])
    except (OSError, ValueError, KeyError):
        return False


def command(name: str, out: Path, threads: int) -> list[str]:
    return [sys.executable, "-m", "dynsr", "train", name, f"train.threads={threads}",
            "--out", str(out), "--resume"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=RUNS, metavar="NAME",
                        help=f"these runs only (of {', '.join(RUNS)})")
    parser.add_argument("--out", type=Path, default=ROOT / "training",
                        help="parent of the run folders (default: the repository's training/)")
    parser.add_argument("--threads", type=int, default=1, help="train.threads (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for name in args.only or RUNS:
        out = args.out / name
        if completed(out):
            print(f"{name}: completed, skipped ({out / 'summary.json'})")
            continue
        argv_run = command(name, out, args.threads)
        print(f"{name}: {' '.join(argv_run[1:])}", flush=True)
        if args.dry_run:
            continue
        result = subprocess.run(argv_run, env=env, check=False)
        if result.returncode:
            print(f"{name}: dynsr train exited with {result.returncode}; stopped here "
                  f"(run this script again to resume)", file=sys.stderr)
            return result.returncode
        if not completed(out):  # stopped early (train.stop_after / time_limit / a signal)
            print(f"{name}: stopped before the end of its schedule; run this script again to "
                  "resume", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
