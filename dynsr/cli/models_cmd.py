"""``dynsr models``: every registered model, its scales, size, cost and weights."""

from __future__ import annotations

import argparse
import json

from dynsr.models import available, create
from dynsr.models.complexity import count_flops, count_parameters
from dynsr.upscale.weights import find_weights

LR_SIZE = (256, 256)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the models (scales, parameters, GFLOPs, weights)",
                       description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(run=run)


def describe_models() -> list[dict]:
    """One record per model and scale; GFLOPs for a 256×256 LR input (multiply-add = 2)."""
    rows = []
    for spec in available():
        for scale in spec.scales:
            model = create(spec.name, scale=scale)
            conditions = {"blur": 1.3, "noise": 15.0} if spec.needs_degradation else {}
            rows.append({
                "name": spec.name,
                "scale": scale,
                "parameters": count_parameters(model),
                "gflops_256": count_flops(model, LR_SIZE, **conditions) / 1e9,
                "weights": find_weights(spec.name, scale) is not None,
                "non_blind": spec.needs_degradation,
                "summary": spec.summary,
                "paper": spec.paper,
            })
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe_models()
    if args.json:
        print(json.dumps({"lr_size_for_gflops": list(LR_SIZE), "models": rows}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  scale  {'params':>9}  {'GFLOPs':>8}  weights  description")
    for r in rows:
        print(f"{r['name']:<{width}}  x{r['scale']:<4}  {r['parameters']:>9,}  "
              f"{r['gflops_256']:>8.2f}  {'yes' if r['weights'] else 'no':<7}  {r['summary']}")
    print(f"GFLOPs: one forward pass on a {LR_SIZE[0]}x{LR_SIZE[1]} LR image "
          "(multiply-add = 2 FLOPs; non-blind models with their degradation map).")
    return 0
