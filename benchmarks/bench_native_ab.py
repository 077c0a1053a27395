"""A/B of two versions of the native tap loops (``dynsr/native/dynamic_taps.c``) in one process.

The source at git revision ``--base`` (default ``HEAD``) and the working tree's are compiled
side by side as dynsr compiles its own (``dynsr.native.build_version``: ``-march=native``, or
x86-64-v3, what an AVX2-only CPU runs, under ``ATEN_CPU_CAPABILITY=avx2``) and their three
entry points (forward, kernel gradient, input gradient)
are called in turns, ``--calls`` times each, on preallocated fp32 tensors: 1×3×H×W images with
shared k×k kernels, for 512² (kernel planes a power of two bytes apart), 500² and 360×640.
``--scale R`` times dynamic upsampling instead (``dynamic_upsample``, UDVD's): outputs of
those sizes from LR images R times smaller, k²·R² kernel planes.
Taking turns in one process keeps this VM's drift (±20 % within seconds) out of the ratio.
Medians in ms, and base / new.

    [ATEN_CPU_CAPABILITY=avx2] python benchmarks/bench_native_ab.py [--base HEAD~1] [--k 3 5 7]
        [--scale 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dynsr.hardware import timing_context  # noqa: E402
from dynsr.native import DynamicTaps, build_version  # noqa: E402
from dynsr.ops.dynamic import _strides as strides  # noqa: E402  (the C loops' strides)

SOURCE = "dynsr/native/dynamic_taps.c"
SIZES = ((512, 512), (500, 500), (360, 640))


def calls(lib: DynamicTaps, k: int, h: int, w: int, threads: int, r: int = 1) -> dict:
    """The three entry points on fresh inputs, outputs allocated once. h x w is the output;
    r > 1: upsampling from (h / r) x (w / r)."""
    g = torch.Generator().manual_seed(0)
    lh, lw = h // r, w // r
    x = torch.randn(1, 3, lh, lw, generator=g)
    kernels = torch.randn(1, k * k * r * r, lh, lw, generator=g)
    grad_y = torch.randn(1, 3, lh * r, lw * r, generator=g)
    y, grad_k, grad_x = torch.empty_like(grad_y), torch.empty_like(kernels), torch.empty_like(x)
    dims = (1, 3, lh, lw, k, 1, r, threads)
    return {
        "forward": lambda: lib.forward(x.data_ptr(), strides(x), kernels.data_ptr(),
                                       strides(kernels), y.data_ptr(), strides(y, r), *dims),
        "kernel grad": lambda: lib.kernel_grad(grad_y.data_ptr(), strides(grad_y, r),
                                               x.data_ptr(), strides(x), grad_k.data_ptr(),
                                               strides(grad_k), *dims),
        "input grad": lambda: lib.input_grad(grad_y.data_ptr(), strides(grad_y, r),
                                             kernels.data_ptr(), strides(kernels),
                                             grad_x.data_ptr(), strides(grad_x), *dims),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the base source")
    parser.add_argument("--k", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=1,
                        help="R > 1: dynamic upsampling by R (default 1: filtering)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        base_source = tmp / "base.c"
        base_source.write_bytes(subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{args.base}:{SOURCE}"], check=True,
            capture_output=True).stdout)
        libs = {"base": build_version(base_source), "new": build_version(ROOT / SOURCE)}
        print(f"{timing_context(args.threads)}\nbase {args.base}, new: working tree "
              f"({libs['new'].path.name}), {args.calls} calls each in turns, medians")
        if args.scale > 1:
            print(f"dynamic upsampling x{args.scale}; sizes are the outputs'")
        print("| k | size | pass | base ms | new ms | base/new |\n|---|---|---|---|---|---|")
        for k in args.k:
            for h, w in SIZES:
                fns = {name: calls(lib, k, h, w, args.threads, args.scale)
                       for name, lib in libs.items()}
                for entry in fns["base"]:
                    times: dict[str, list[float]] = {"base": [], "new": []}
                    for name in times:  # warm-up
                        fns[name][entry]()
                    for _ in range(args.calls):
                        for name in times:
                            start = time.perf_counter()
                            fns[name][entry]()
                            times[name].append(time.perf_counter() - start)
                    base, new = (statistics.median(times[n]) * 1e3 for n in ("base", "new"))
                    print(f"| {k} | {h}x{w} | {entry} | {base:.3f} | {new:.3f} | "
                          f"{base / new:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
