"""``dynsr models``: every registered model, its scales, size, cost and weights.

Parameters and GFLOPs come from the table stored with the models
(``dynsr/models/model_table.json``, checked against fresh counts by the tests), so the list
appears at once; ``--measure`` builds every model and counts them afresh (about 20 s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynsr.upscale.manifest import find_weights

# Read as a file: importing dynsr.models would load torch and every model.
MODEL_TABLE = Path(__file__).resolve().parent.parent / "models" / "model_table.json"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models (scales, parameters, GFLOPs, weights)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--measure", action="store_true",
                   help="count parameters and FLOPs afresh instead of reading the stored table")
    p.set_defaults(run=run)


def describe_models(measure: bool = False) -> tuple[list[int], list[dict]]:
    """The LR size of the FLOP figures, and one record per model and scale (multiply-add =
    2 FLOPs; non-blind models with their degradation map)."""
    if measure:
        from dynsr.models.complexity import measure_model_table

        table = measure_model_table()
    else:
        table = json.loads(MODEL_TABLE.read_text(encoding="utf-8"))
    rows = []
    for name, model in table["models"].items():
        for scale, cost in model["scales"].items():
            rows.append({
                "name": name,
                "scale": int(scale),
                "parameters": cost["parameters"],
                "gflops_256": cost["flops"] / 1e9,
                "weights": find_weights(name, int(scale)) is not None,
                "non_blind": model["non_blind"],
                "summary": model["summary"],
                "paper": model["paper"],
            })
    return table["lr_size_for_flops"], rows


def run(args: argparse.Namespace) -> int:
    lr_size, rows = describe_models(args.measure)
    if args.json:
        print(json.dumps({"lr_size_for_gflops": lr_size, "models": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  scale  {'params':>9}  {'GFLOPs':>8}  weights  description")
    for r in rows:
        print(f"{r['name']:<{width}}  x{r['scale']:<4}  {r['parameters']:>9,}  "
              f"{r['gflops_256']:>8.2f}  {'yes' if r['weights'] else 'no':<7}  {r['summary']}")
    print(f"GFLOPs: one forward pass on a {lr_size[0]}x{lr_size[1]} LR image "
          "(multiply-add = 2 FLOPs; non-blind models with their degradation map).")
    return 0
