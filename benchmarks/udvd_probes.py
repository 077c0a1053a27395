"""Which levers move UDVD? Short training runs, one change at a time, same seed and budget.

Every probe is ``dynsr train configs/udvd_x2_cpu.yaml`` with the shared short schedule below
(3,000 iterations, 300 warm-up, cosine to 1e-6, the shipped recipe's seed 0, validation on
Set5 at blur width 1.3 / noise 15 every 1,000 iterations) and ONE change against ``base``.
Runs go to ``runs/udvd_probes/NAME`` (resumable: a stopped probe continues from its state),
one thread each so that another job can use the second core. The table of the finished
probes (final Set5 PSNR-Y, the change against base, wall time, iterations per second and the
CPU they ran on) is written to ``results/udvd/probes.json``:

    python benchmarks/udvd_probes.py [--only NAME ...] [--threads 1]
    python benchmarks/udvd_probes.py --table            # print the table of what finished
    python benchmarks/udvd_probes.py --table --figure docs/images/udvd_probes.png

``--figure`` draws the probes' validation curves (Set5 PSNR-Y against iterations) and their
change against base at the end, from the table (needs matplotlib).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

from dynsr.hardware import cpu_flags, describe_cpu
from dynsr.io import atomic_write_bytes, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "udvd_x2_cpu.yaml"
OUT = ROOT / "runs" / "udvd_probes"
# Each finished probe's summary.json and log.csv are kept here (tracked), because runs/ is a
# per-machine scratch folder and the probes span sessions.
KEPT = ROOT / "training" / "udvd_probes"
RESULT = ROOT / "results" / "udvd" / "probes.json"

BUDGET = ["train.iterations=3000", "train.warmup=300", "data.val.every=1000",
          "checkpoint.every=250"]
# name -> (overrides against the shipped recipe, what the lever is)
PROBES: dict[str, tuple[list[str], str]] = {
    "base": ([], "shipped recipe (C 64, N 8, batch 16 x 64², L1 multistage, lr 2e-4, EMA, bf16)"),
    "long6000": (["train.iterations=6000"],
                 "schedule twice as long (6,000 iterations), still decayed to its end"),
    "lr4e-4": (["train.lr=4e-4"], "peak learning rate 4e-4"),
    "patch96": (["data.train.patch_size=96"], "HR patch 96² (2.25x the pixels per step)"),
    "patch128_b8": (["data.train.patch_size=128", "train.batch_size=8"],
                    "HR patch 128², batch 8 (2x the pixels per step)"),
    "batch32": (["train.batch_size=32"], "batch 32 (2x the pixels per step)"),
    "c128": (["model.config={channels: 128}"], "trunk width C 128 (N 8)"),
    "n16": (["model.config={num_residual_blocks: 16}"], "trunk depth N 16 (C 64)"),
    "fp32": (["train.precision=fp32"], "fp32 instead of bf16 autocast"),
    "no_ema": (["train.ema_decay=null"], "no EMA"),
    "l2": (["train.loss=l2"], "L2 loss from the start"),
    "invariant": (["data.train.degradation_options.spatially_variant=0.0"],
                  "no spatially variant samples"),
    "noise0_50": (["data.train.degradation_options.noise_range=[0, 50]"],
                  "noise sampled from 0-50 instead of 0-75 (Table 2's levels are 15 and 50)"),
    "no_multistage": (["train.multistage=false"], "loss on the final output only"),
    "no_augment": (["data.train.augment=false"], "no flips / rotations"),
    # Not a lever: the spread of one recipe over seeds, against which the others are read.
    "seed1": (["train.seed=1"], "base with seed 1 (the probes' noise floor)"),
}


def run_probe(name: str, threads: int) -> None:
    overrides, _ = PROBES[name]
    cmd = [sys.executable, "-m", "dynsr", "train", str(CONFIG), *BUDGET, *overrides,
           f"name=udvd_probe_{name}", f"train.threads={threads}",
           "--out", str(OUT / name), "--resume", "--no-progress"]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def keep_finished(name: str) -> None:
    """Copy a completed probe's summary and log to the tracked ``training/udvd_probes``."""
    summary_path = OUT / name / "summary.json"
    if summary_path.exists() and json.loads(summary_path.read_text()).get("completed"):
        (KEPT / name).mkdir(parents=True, exist_ok=True)
        for file in ("summary.json", "log.csv", "config.yaml"):
            if (OUT / name / file).exists():
                shutil.copyfile(OUT / name / file, KEPT / name / file)


def table() -> dict:
    """The finished probes: from their kept summaries, else the rows already in the JSON
    (probes whose summaries predate ``training/udvd_probes``)."""
    earlier = json.loads(RESULT.read_text())["probes"] if RESULT.exists() else {}
    rows = {}
    base = None
    for name, (overrides, what) in PROBES.items():
        summary_path = KEPT / name / "summary.json"
        if not summary_path.exists():
            if name in earlier:
                rows[name] = earlier[name]
                if name == "base":
                    base = earlier[name]["set5_psnr_y"]
            continue
        summary = json.loads(summary_path.read_text())
        final = summary["validation"][-1]
        rows[name] = {"lever": what, "overrides": overrides,
                      "set5_psnr_y": round(final["psnr_y"], 4),
                      "set5_ssim_y": round(final["ssim_y"], 4),
                      "curve": [(v["iteration"], round(v["psnr_y"], 4))
                                for v in summary["validation"]],
                      "hours": round(summary["wall_time_s"] / 3600, 3),
                      "it_per_s": round(summary["mean_it_per_s"], 3),
                      "machines": summary.get("machines")}
        if name == "base":
            base = final["psnr_y"]
    if base is not None:
        for row in rows.values():
            row["delta_db"] = round(row["set5_psnr_y"] - base, 4)
    return {"protocol": "configs/udvd_x2_cpu.yaml + " + " ".join(BUDGET)
            + "; Set5 PSNR-Y / SSIM-Y (crop 2) at blur 1.3 / noise 15, EMA weights at the end of"
            " the schedule (3,000 iterations; long6000: 6,000)",
            "cpu": describe_cpu(), "flags": cpu_flags(), "probes": rows}


def write_result(result: dict) -> None:
    """Write the table atomically (two probe workers may finish close together)."""
    atomic_write_text(RESULT, json.dumps(result, indent=1) + "\n")


def draw_figure(result: dict, out: Path) -> None:
    """Left: each probe's validation curve; right: its change against base at the end. Hours
    are not drawn: the probes ran beside different jobs, so their clocks are not comparable."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["probes"]
    figure = Figure(figsize=(12, 5.5), layout="constrained")
    FigureCanvasAgg(figure)
    curves, bars = figure.subplots(1, 2, width_ratios=(3, 2))
    for index, (name, row) in enumerate(rows.items()):
        its, psnr = zip(*row["curve"], strict=True)
        # Ten colours in the cycle: the probes after the tenth are dashed to stay apart.
        curves.plot(its, psnr, marker="o", markersize=3, color=f"C{index % 10}",
                    linestyle="--" if index >= 10 else "-",
                    linewidth=2.5 if name == "base" else 1, label=name)
    curves.set_xlabel("iterations")
    curves.set_ylabel("Set5 PSNR-Y (dB), width 1.3 / noise 15")
    curves.grid(True, alpha=0.3)
    curves.legend(fontsize=8, ncol=2, loc="lower right")
    names = sorted(rows, key=lambda n: rows[n].get("delta_db", 0.0))
    deltas = [rows[n].get("delta_db", 0.0) for n in names]
    bars.barh(names, deltas, color=["#2b8a3e" if d > 0.05 else "#c92a2a" if d < -0.05
                                    else "#868e96" for d in deltas])
    for y, delta in enumerate(deltas):
        bars.text(delta, y, f" {delta:+.2f}", va="center", fontsize=8)
    bars.axvline(0, color="black", linewidth=0.8)
    bars.set_xlabel("change against base at the end (dB)")
    bars.grid(True, axis="x", alpha=0.3)
    figure.suptitle("UDVD x2 probes: the shipped recipe with one change, 3,000 iterations "
                    "(long6000: 6,000), seed 0 (seed1: 1)", fontsize=11)
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100)
    atomic_write_bytes(out, png.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(PROBES), help="run these probes only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only write and print the table")
    ap.add_argument("--figure", type=Path, metavar="PNG",
                    help="also draw the curves and changes (needs matplotlib)")
    args = ap.parse_args()
    if not args.table:
        for name in args.only or list(PROBES):
            run_probe(name, args.threads)
            keep_finished(name)
            write_result(table())
    result = table()
    write_result(result)
    print("| probe | lever | Set5 PSNR-Y | Δ vs base | hours | it/s |")
    print("|---|---|---|---|---|---|")
    for name, row in result["probes"].items():
        print(f"| {name} | {row['lever']} | {row['set5_psnr_y']:.2f} | "
              f"{row.get('delta_db', 0):+.2f} | {row['hours']:.2f} | {row['it_per_s']:.2f} |")
    if args.figure is not None:
        try:
            draw_figure(result, args.figure)
        except ImportError:
            print("udvd_probes: --figure needs matplotlib (pip install 'dynsr[plot]')",
                  file=sys.stderr)
            return 1
        print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
