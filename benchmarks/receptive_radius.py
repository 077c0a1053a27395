"""Receptive radius of each model, with its shipped (trained) weights, against the tiling table.

Tiled upscaling is exact when every tile saw the whole receptive field of the pixels it
gives weight to (``dynsr.upscale.tiling``); :data:`dynsr.upscale.tiling.RECEPTIVE_RADIUS`
was measured on randomly initialised models, and trained kernels may reach further. For each
model and scale this script changes one LR pixel in the middle of a random (seeded) LR
image and reports the largest distance, in LR pixels (Chebyshev, from the changed pixel to
the HR pixel's centre on the LR grid), at which any output sample moved by more than
``--threshold`` (float64, 0..1 scale). DyConvSR's attention pools the whole image; tiles
are given the whole image's attention, so it is held at the unchanged image's here. UDVD is
told blur width 1.3 and noise 15.

    python benchmarks/receptive_radius.py [--models ddet-rgb udvd-lite] [--scales 2 3 4]
        [--weights FILE] [--random] [--size 112] [--threshold 1e-6] [--json FILE]

Exit status 1 if a measured radius exceeds the table's.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import torch

import dynsr
from dynsr.io import atomic_write_json
from dynsr.upscale.tiling import FALLBACK_RADIUS, RECEPTIVE_RADIUS


def measure(model: torch.nn.Module, scale: int, size: int, threshold: float,
            conditions: dict) -> float:
    """The receptive radius of ``model`` (float64, eval mode) in LR pixels."""
    gen = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, size, size, generator=gen, dtype=torch.float64)
    centre = size // 2
    changed = lr.clone()
    changed[..., centre, centre] = 1.0 - changed[..., centre, centre]
    extra = dict(conditions)
    if hasattr(model, "global_context"):
        # global_context works in float32: ask a float32 copy, hand the result over in float64.
        context = copy.deepcopy(model).float().global_context(lr[0].float())
        extra.update({k: v.double() for k, v in context.items()})
    with torch.no_grad():
        moved = (model(changed, **extra) - model(lr, **extra)).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(moved > threshold, as_tuple=True)
    if rows.numel() == 0:
        return 0.0
    # HR pixel i is centred at LR coordinate (i + 0.5) / s - 0.5.
    dist_rows = ((rows.double() + 0.5) / scale - 0.5 - centre).abs()
    dist_cols = ((cols.double() + 0.5) / scale - 0.5 - centre).abs()
    return float(torch.maximum(dist_rows, dist_cols).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dyconvsr", "ddet-rgb", "udvd-lite"])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--weights", type=Path, help="a weights file (one model and scale)")
    parser.add_argument("--random", action="store_true",
                        help="random-initialised models instead of the shipped weights")
    parser.add_argument("--size", type=int, default=112, help="LR side (default 112)")
    parser.add_argument("--threshold", type=float, default=1e-6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows, too_far = [], False
    for name in args.models:
        for scale in args.scales:
            notes: list[str] = []
            up = dynsr.load(name, scale, device="cpu", precision="fp32", notify=notes.append,
                            weights=args.weights,
                            weights_dir=Path("/nonexistent") if args.random else None)
            if not up.trained and not args.random:
                print(f"{name} x{scale}: no weights, skipped")
                continue
            model = up.model.double().eval()
            conditions = {"blur": 1.3, "noise": 15.0} if up.needs_degradation else {}
            radius = measure(model, scale, args.size, args.threshold, conditions)
            table = RECEPTIVE_RADIUS.get(name, FALLBACK_RADIUS)
            ok = math.ceil(radius) <= table
            too_far |= not ok
            rows.append({"model": name, "scale": scale, "trained": up.trained,
                         "radius_lr_px": round(radius, 2), "table": table, "within": ok})
            print(f"{name:<12} x{scale}  {'trained' if up.trained else 'random'}  radius "
                  f"{radius:6.2f} LR px  table {table:3d}  {'ok' if ok else 'EXCEEDS'}",
                  flush=True)
    if args.json is not None:
        atomic_write_json(args.json, {"size": args.size, "threshold": args.threshold,
                                      "rows": rows, "torch": torch.__version__})
    return 1 if too_far else 0


if __name__ == "__main__":
    raise SystemExit(main())
