"""Training throughput of the CPU recipes on this machine, and where the time goes.

For each recipe (default: every ``configs/*_cpu.yaml``) the training engine is built exactly
as ``dynsr train`` builds it, a few warm-up iterations are run, then ``--iterations`` timed
ones, each split into its four phases:

* data: drawing the batch (crop, degradation, augmentation, collation);
* forward: the model and the loss (under bf16 autocast when the recipe says so);
* backward: gradients;
* step: gradient clipping, the optimiser step and the EMA update.

One validation pass on the recipe's ``data.val`` is timed too. The table gives iterations per
second, the share of each phase and the estimated time of the recipe's whole schedule
(training plus its validations). Run it on a quiet machine: another process using the
cores slows PyTorch's threads down far more than proportionally.

    python benchmarks/bench_train.py                      # every CPU recipe
    python benchmarks/bench_train.py configs/dyconvsr_x2_cpu.yaml --iterations 50
    python benchmarks/bench_train.py --set train.precision=fp32 --json results.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from dynsr.hardware import describe_cpu
from dynsr.train.config import load_config
from dynsr.train.distributed import torch_settings
from dynsr.train.engine import Trainer

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("data", "forward", "backward", "step")


def bench_recipe(path: Path, iterations: int, warmup: int, overrides: list[str],
                 validate: bool) -> dict:
    cfg = load_config(path, overrides)
    with tempfile.TemporaryDirectory() as out, torch_settings(cfg.train.threads):
        start = time.perf_counter()
        trainer = Trainer(cfg, out)
        setup_s = time.perf_counter() - start
        times = {phase: 0.0 for phase in PHASES}
        for i in range(warmup + iterations):
            t0 = time.perf_counter()
            batch = trainer.next_batch()
            t1 = time.perf_counter()
            loss = trainer.forward_loss(batch)
            t2 = time.perf_counter()
            trainer.backward(loss)
            t3 = time.perf_counter()
            trainer.optimizer_step()
            t4 = time.perf_counter()
            if i >= warmup:
                for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3),
                                          strict=True):
                    times[phase] += seconds
        val_s = None
        if validate and cfg.data.val is not None:
            t0 = time.perf_counter()
            trainer.validate()
            val_s = time.perf_counter() - t0
    total = sum(times.values())
    it_per_s = iterations / total
    validations = 0 if cfg.data.val is None else math.ceil(cfg.train.iterations /
                                                            cfg.data.val.every)
    full_h = (cfg.train.iterations / it_per_s + validations * (val_s or 0.0)) / 3600
    return {
        "recipe": path.name,
        "model": cfg.model.name,
        "scale": cfg.model.scale,
        "batch": cfg.train.batch_size,
        "patch": cfg.data.train.get("patch_size", 96),
        "precision": cfg.train.precision,
        "threads": torch.get_num_threads() if cfg.train.threads is None else cfg.train.threads,
        "cpu": describe_cpu(),
        "it_per_s": it_per_s,
        "share": {phase: times[phase] / total for phase in PHASES},
        "ms": {phase: 1000 * times[phase] / iterations for phase in PHASES},
        "validation_s": val_s,
        "setup_s": setup_s,
        "iterations_in_recipe": cfg.train.iterations,
        "full_run_h": full_h,
    }


def format_table(rows: list[dict]) -> str:
    header = (f"{'recipe':<34} {'batch x patch':>13} {'prec':>4} {'it/s':>6} "
              f"{'data':>5} {'fwd':>5} {'bwd':>5} {'step':>5} {'val s':>6} {'iters':>7} "
              f"{'run h':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        share = r["share"]
        val = f"{r['validation_s']:.1f}" if r["validation_s"] is not None else "-"
        lines.append(
            f"{r['recipe']:<34} {r['batch']:>5} x {r['patch']:<5} {r['precision']:>4} "
            f"{r['it_per_s']:6.2f} "
            + " ".join(f"{100 * share[p]:4.0f}%" for p in PHASES)
            + f" {val:>6} {r['iterations_in_recipe']:>7} {r['full_run_h']:6.1f}")
    lines.append("data/fwd/bwd/step: share of an iteration; val s: one validation pass; "
                 "run h: the whole schedule with its validations")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="*", type=Path,
                        help="configs to measure (default: configs/*_cpu.yaml)")
    parser.add_argument("--iterations", type=int, default=30, help="timed iterations (30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations first (5)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a key in every recipe")
    parser.add_argument("--no-validation", action="store_true",
                        help="do not time a validation pass")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    recipes = args.recipes or sorted((ROOT / "configs").glob("*_cpu.yaml"))
    if not recipes:
        parser.error("no recipes found")
    rows = []
    for path in recipes:
        row = bench_recipe(path, args.iterations, args.warmup, args.overrides,
                           not args.no_validation)
        rows.append(row)
        phases = ", ".join(f"{p} {ms:.0f} ms" for p, ms in row["ms"].items())
        print(f"{path.name}: {row['it_per_s']:.2f} it/s ({phases})", file=sys.stderr,
              flush=True)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
