"""CPU inference speed of every registered model: fp32 eager, channels_last, bf16.

For each model and scale, one 640×360 LR frame (RGB) is upscaled through
``dynsr.models.inference.upscale_batch`` in three ways, measured in the same run:

* ``fp32``: eager, NCHW (the straightforward way);
* ``fp32-cl``: channels_last weights and input;
* ``bf16-cl``: channels_last + ``torch.autocast("cpu", torch.bfloat16)``.

Printed per way: median seconds per frame over ``--repeats`` runs after one warm-up, output
megapixels per second, GFLOP/s achieved (FLOPs from ``dynsr.models.complexity.count_flops``,
a multiply-add = 2), and the speed-up over the first way timed (fp32 eager by default).
Non-blind models (UDVD) get blur width 1.3 and noise 15.

    python benchmarks/bench_models.py [--models ddet dyconvsr] [--scales 2 4] [--repeats 3] \
        [--ways fp32 fp32-cl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dynsr.hardware import timing_context
from dynsr.models import available, create
from dynsr.models.complexity import count_flops
from dynsr.models.inference import prepare_model, upscale_batch

WAYS = (("fp32", "fp32", False), ("fp32-cl", "fp32", True), ("bf16-cl", "bf16", True))


def time_way(name: str, scale: int, precision: str, channels_last: bool, lr: torch.Tensor,
             repeats: int, conditions: dict) -> float:
    model = prepare_model(create(name, scale=scale), channels_last=channels_last)
    upscale_batch(model, lr, precision=precision, channels_last=channels_last, **conditions)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        upscale_batch(model, lr, precision=precision, channels_last=channels_last, **conditions)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="model names (default: all but bicubic)")
    parser.add_argument("--scales", nargs="*", type=int, default=[2, 3, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    parser.add_argument("--ways", nargs="*", choices=[w[0] for w in WAYS],
                        help="ways to time (default: all; e.g. skip bf16-cl where bf16 is "
                             "emulated)")
    args = parser.parse_args()
    ways = [w for w in WAYS if not args.ways or w[0] in args.ways]

    torch.manual_seed(0)
    lr = torch.rand(1, 3, *args.size)
    specs = [s for s in available() if s.name != "bicubic"]
    if args.models:
        specs = [s for s in specs if s.name in args.models]
    print(json.dumps(timing_context()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, LR {args.size[1]}x"
          f"{args.size[0]}, median of {args.repeats} after a warm-up")
    print("| model | scale | GFLOPs/frame | way | s/frame | out MP/s | GFLOP/s | vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in specs:
        conditions = {"blur": 1.3, "noise": 15.0} if spec.needs_degradation else {}
        for scale in (s for s in args.scales if s in spec.scales):
            flops = count_flops(create(spec.name, scale=scale), tuple(args.size), **conditions)
            out_mp = args.size[0] * args.size[1] * scale * scale / 1e6
            base = None
            for way, precision, channels_last in ways:
                sec = time_way(spec.name, scale, precision, channels_last, lr, args.repeats,
                               conditions)
                base = base or sec
                print(f"| {spec.name} | x{scale} | {flops / 1e9:.1f} | {way} | {sec:.3f} | "
                      f"{out_mp / sec:.2f} | {flops / 1e9 / sec:.0f} | {base / sec:.2f}x |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
