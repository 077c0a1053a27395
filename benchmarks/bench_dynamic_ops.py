"""Benchmark dynsr's dynamic_filter / dynamic_upsample against an F.unfold reference.

Cases (B = 1, shared kernels): a 512×512×3 image filtered with k = 3, 5, 7, and UDVD-style
upsampling r = 2, k = 5 of a 256×256×3 image (output 512×512). For each case, implementation
(dynsr as it runs by default, i.e. the native one-pass loops of ``dynsr/native`` for fp32 when
a C compiler is at hand; "loop", dynsr's pure-torch tap loop, ``DYNSR_NATIVE=0``; unfold) and
pass (fwd, fwd+bwd) the script reports the median time of ``--repeats``
runs after warm-up and the extra peak memory.

How memory is measured. Every (case, implementation, pass) runs in its own child process, so
each starts from a fresh allocator; the inputs (and the backward's grad_output) are allocated
and the thread pool started before anything is measured. Two figures:

* "MB" (the main one): peak of live tensor bytes allocated during one call, from torch's
  profiler allocation events (``profile_memory=True``; each event carries its size, summed in
  time order). This counts exactly the op's temporaries, outputs, gradients and autograd
  graph, and nothing else. (tracemalloc cannot see torch's allocator.)
* "RSS": ``ru_maxrss`` after the first (cold, unprofiled) call minus the RSS read from
  /proc/self/statm just before it: what the OS saw, including allocator slack and thread
  stacks. Printed as an upper bound ("<=") if the call never rose above the high-water mark
  the process already had.

Timing follows in the same child: two warm-up calls, then the median of ``--repeats``.

The memory floor. "floor ms" is the pass's compulsory traffic (forward: read x and the
kernels, write y; the backward adds reading the output gradient, x and the kernels and
writing both gradients) divided by this machine's streaming bandwidth, measured in the
same run (``c = a + b`` on 64 MB tensors, in a child process like the cases, before the
first case and after each; the median). "x floor" is dynsr's time over that floor: 1.0 would
be an op as fast as the memory allows. The CPU model, its flags, the SIMD level PyTorch
dispatches to and oneDNN's cap are printed (and written with ``--json``) with the table.

Fresh or reused memory. By default every call's outputs and gradients are fresh
allocations, and the large ones (the k = 7 kernel gradient is 51 MB) are fresh pages that the
kernel must fault in and zero. ``--reuse-memory`` measures as the ``dynsr`` commands run, with
glibc keeping freed memory for reuse (``dynsr.malloc.keep_freed_memory``), for every
implementation alike.

Usage::

    python benchmarks/bench_dynamic_ops.py [--repeats 10] [--threads 2] [--size 512] \\
        [--json results/speed/dynamic_ops_CPU.json] [--compiled] [--reuse-memory]
    python benchmarks/bench_dynamic_ops.py --layouts   # memory-format / dtype variants
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dynsr.hardware import timing_context  # noqa: E402
from dynsr.io import atomic_write_json  # noqa: E402
from dynsr.malloc import keep_freed_memory  # noqa: E402
from dynsr.native import dynamic_taps  # noqa: E402
from dynsr.ops import dynamic as dyn  # noqa: E402


def unfold_filter(x: torch.Tensor, kernels: torch.Tensor, k: int) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, h, w)
    return (cols * kernels.unsqueeze(1)).sum(2)


def unfold_upsample(x: torch.Tensor, kernels: torch.Tensor, k: int, r: int) -> torch.Tensor:
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(b, c, k * k, 1, h, w)
    y = (cols * kernels.view(b, 1, k * k, r * r, h, w)).sum(2)
    return F.pixel_shuffle(y.reshape(b, c * r * r, h, w), r)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _profiled_peak_mb(run) -> float:
    """Peak live bytes allocated by torch during run(), from the profiler's allocation events."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    sizes = []

    def walk(node) -> None:
        if node.typed[0] == _EventType.Allocation:
            sizes.append((node.start_time_ns, node.typed[1].alloc_size))
        for child_node in node.children:
            walk(child_node)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    live = peak = 0
    for _, size in sorted(sizes):
        live += size
        peak = max(peak, live)
    return peak / 2**20


def _make_inputs(spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, spec.get("dtype", "float32"))
    b, c, h, w = 1, spec["channels"], spec["size"], spec["size"]
    k, r = spec["k"], spec.get("scale", 1)
    x = torch.rand(b, c, h, w, generator=g).to(dtype)
    kernels = torch.rand(b, k * k * r * r, h, w, generator=g).to(dtype)
    if spec.get("x_format") == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    if spec.get("k_format") == "cl":
        kernels = kernels.contiguous(memory_format=torch.channels_last)
    return x, kernels


def compiled_filter(k: int):
    """The tap loop as plain tensor code, compiled by torch.compile (inductor, C++): one fused
    loop over the taps per pixel, the lever the eager tap loop lacks (an experiment)."""

    def taps(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        p = k // 2
        xp = F.pad(x, (p, p, p, p))
        h, w = x.shape[-2:]
        out = xp[:, :, 0:h, 0:w] * kernels[:, 0:1]
        for t in range(1, k * k):
            u, v = divmod(t, k)
            out = out + xp[:, :, u:u + h, v:v + w] * kernels[:, t:t + 1]
        return out

    return torch.compile(taps, dynamic=False)


def _op(spec: dict):
    k, r = spec["k"], spec.get("scale", 1)
    if spec["impl"] == "compiled":
        return compiled_filter(k)
    if spec["impl"] in ("dynsr", "tap_loop"):
        if r > 1:
            return lambda x, kern: dyn.dynamic_upsample(x, kern, r)
        return lambda x, kern: dyn.dynamic_filter(x, kern)
    if r > 1:
        return lambda x, kern: unfold_upsample(x, kern, k, r)
    return lambda x, kern: unfold_filter(x, kern, k)


def child(spec: dict) -> dict:
    """Run one measurement in this (fresh) process; returns ms and extra MB."""
    torch.set_num_threads(spec["threads"])
    if spec.get("reuse_memory"):
        keep_freed_memory()
    if spec.get("impl") == "tap_loop":
        os.environ["DYNSR_NATIVE"] = "0"  # the torch tap loop dynsr falls back to
    if "channels_last_min_c" in spec:
        dyn._CHANNELS_LAST_MIN_C = spec["channels_last_min_c"]
    x, kernels = _make_inputs(spec)
    op = _op(spec)
    backward = spec["pass"] == "fwd+bwd"
    if backward:
        x.requires_grad_()
        kernels.requires_grad_()
        grad_out = torch.ones_like(op(x.detach(), kernels.detach()))

    def run() -> None:
        y = op(x, kernels)
        if backward:
            y.backward(grad_out)
            x.grad = kernels.grad = None

    torch.ones(1 << 20).mul_(2)  # start the intra-op thread pool before measuring
    rss0, high0 = _rss_mb(), _maxrss_mb()
    run()  # first call: what the OS saw
    high1 = _maxrss_mb()
    alloc_peak = _profiled_peak_mb(run)

    for _ in range(2):
        run()
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {
        "ms": statistics.median(times) * 1e3,
        "alloc_mb": alloc_peak,
        "rss_mb": high1 - rss0,
        "rss_bound": high1 <= high0,
    }


def measure(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_rss(m: dict) -> str:
    return ("<=" if m["rss_bound"] else "") + f"{m['rss_mb']:.0f}"


def pass_bytes(spec: dict, pass_: str) -> int:
    """Compulsory memory traffic of one call: every tensor the pass must read or write, once.

    Forward: read x and the kernels, write y. Backward (added for "fwd+bwd"): read the
    output gradient, x and the kernels, write the gradients of x and of the kernels.
    """
    c, s, k, r = spec["channels"], spec["size"], spec["k"], spec.get("scale", 1)
    item = torch.empty((), dtype=getattr(torch, spec.get("dtype", "float32"))).element_size()
    x, kernels, y = c * s * s, k * k * r * r * s * s, c * s * s * r * r
    forward = x + kernels + y
    backward = y + x + kernels + x + kernels
    return item * (forward + (backward if pass_ == "fwd+bwd" else 0))


def bandwidth_child(threads: int, repeats: int) -> dict:
    """This machine's streaming bandwidth now: c = a + b on 64 MB float32 tensors (read 2,
    write 1; the tensors far larger than the caches), median GB/s."""
    torch.set_num_threads(threads)
    n = 16 << 20
    a, b, c = torch.rand(n), torch.rand(n), torch.empty(n)
    for _ in range(3):
        torch.add(a, b, out=c)
    times = []
    for _ in range(max(repeats, 10)):
        t0 = time.perf_counter()
        torch.add(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return {"gb_per_s": 3 * 4 * n / statistics.median(times) / 1e9}


def main_table(args: argparse.Namespace) -> None:
    cases = [
        ("filter k=3", {"k": 3, "size": args.size}),
        ("filter k=5", {"k": 5, "size": args.size}),
        ("filter k=7", {"k": 7, "size": args.size}),
        ("upsample r=2 k=5", {"k": 5, "scale": 2, "size": args.size // 2}),
    ]
    bandwidths = [measure({"bandwidth": True, "threads": args.threads,
                           "repeats": args.repeats})["gb_per_s"]]
    header = (
        f"{'case':<18} {'pass':<8} {'dynsr ms':>9} {'loop ms':>8} {'unfold ms':>10} {'ratio':>6} "
        f"{'floor ms':>9} {'x floor':>8} {'dynsr MB':>9} {'unfold MB':>10} "
        f"{'dynsr RSS':>10} {'unfold RSS':>11}"
    )
    rows = []
    lines = []
    for name, case in cases:
        for pass_ in ("fwd", "fwd+bwd"):
            base = {"channels": 3, "threads": args.threads, "repeats": args.repeats,
                    "reuse_memory": args.reuse_memory, **case}
            ours = measure({**base, "impl": "dynsr", "pass": pass_})
            loop = measure({**base, "impl": "tap_loop", "pass": pass_})
            ref = measure({**base, "impl": "unfold", "pass": pass_})
            if args.compiled and pass_ == "fwd" and "scale" not in case:
                compiled = measure({**base, "impl": "compiled", "pass": pass_})
                floor = pass_bytes(base, pass_) / bandwidths[0] / 1e6
                print(f"{name} fwd: torch.compile'd tap loop {compiled['ms']:.2f} ms, dynsr "
                      f"{ours['ms']:.2f} ms (floor {floor:.2f} ms at the first bandwidth "
                      f"sample)", flush=True)
            rows.append({"case": name, "pass": pass_, "dynsr_ms": ours["ms"],
                         "tap_loop_ms": loop["ms"], "unfold_ms": ref["ms"],
                         "bytes": pass_bytes(base, pass_),
                         "dynsr_mb": ours["alloc_mb"], "unfold_mb": ref["alloc_mb"],
                         "dynsr_rss": _fmt_rss(ours), "unfold_rss": _fmt_rss(ref)})
        # the bandwidth again between cases: the machine's speed drifts
        bandwidths.append(measure({"bandwidth": True, "threads": args.threads,
                                   "repeats": args.repeats})["gb_per_s"])
    bandwidth = statistics.median(bandwidths)
    for row in rows:
        row["floor_ms"] = row["bytes"] / bandwidth / 1e6
        lines.append(
            f"{row['case']:<18} {row['pass']:<8} {row['dynsr_ms']:>9.2f} "
            f"{row['tap_loop_ms']:>8.2f} {row['unfold_ms']:>10.2f} "
            f"{row['unfold_ms'] / row['dynsr_ms']:>6.1f} {row['floor_ms']:>9.2f} "
            f"{row['dynsr_ms'] / row['floor_ms']:>8.2f} {row['dynsr_mb']:>9.1f} "
            f"{row['unfold_mb']:>10.1f} {row['dynsr_rss']:>10} {row['unfold_rss']:>11}")
    machine = timing_context(args.threads)
    library = dynamic_taps()
    machine["native_dynamic_taps"] = library.path.name if library is not None else None
    print(json.dumps(machine))
    print(f"streaming bandwidth (c = a + b, 64 MB tensors): median {bandwidth:.1f} GB/s of "
          f"{', '.join(f'{b:.1f}' for b in bandwidths)}")
    print(header)
    print("-" * len(header))
    print("\n".join(lines))
    if args.json:
        atomic_write_json(args.json, {"machine": machine, "size": args.size,
                                      "repeats": args.repeats,
                                      "reuse_memory": args.reuse_memory,
                                      "bandwidth_gb_per_s": bandwidth,
                                      "bandwidth_samples": bandwidths, "rows": rows})


def layouts_table(args: argparse.Namespace) -> None:
    """dynsr only: memory formats of x / kernels, compute layout, bf16."""
    rows = []
    for c, size in ((3, args.size), (64, args.size // 4)):
        for xf, kf in (("cf", "cf"), ("cl", "cf"), ("cf", "cl"), ("cl", "cl")):
            rows.append((c, size, xf, kf, "float32", None))
        rows.append((c, size, "cl", "cl", "float32", 1))  # force channels_last compute
        rows.append((c, size, "cl", "cl", "float32", 10**9))  # force contiguous compute
        rows.append((c, size, "cf", "cf", "bfloat16", None))
    print(
        f"{'C':>3} {'size':>5} {'x':>3} {'K':>3} {'dtype':>9} {'compute':>8} {'pass':<12} "
        f"{'ms':>8} {'MB':>7}"
    )
    for c, size, xf, kf, dtype, min_c in rows:
        for k in (3, 7) if c == 3 else (3, 5):
            for pass_ in ("fwd", "fwd+bwd"):
                spec = {
                    "channels": c, "size": size, "k": k, "x_format": xf, "k_format": kf,
                    "dtype": dtype, "threads": args.threads, "repeats": args.repeats,
                    "impl": "dynsr", "pass": pass_,
                }  # fmt: skip
                compute = "auto"
                if min_c is not None:
                    spec["channels_last_min_c"] = min_c
                    compute = "cl" if min_c == 1 else "cf"
                m = measure(spec)
                print(
                    f"{c:>3} {size:>5} {xf:>3} {kf:>3} {dtype:>9} {compute:>8} "
                    f"{pass_ + f' k={k}':<12} {m['ms']:>8.2f} {m['alloc_mb']:>7.1f}",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="output side length (default 512)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--layouts", action="store_true", help="memory-format/dtype variants")
    parser.add_argument("--reuse-memory", action="store_true",
                        help="measure as the dynsr commands run: freed memory kept for reuse "
                             "(dynsr.malloc.keep_freed_memory) instead of fresh pages")
    parser.add_argument("--json", type=Path, help="write the main table here")
    parser.add_argument("--compiled", action="store_true",
                        help="also time the filter forward as a torch.compile'd tap loop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        result = (bandwidth_child(spec["threads"], spec["repeats"]) if spec.get("bandwidth")
                  else child(spec))
        print(json.dumps(result))
        return
    print(f"torch {torch.__version__}, threads {args.threads}, repeats {args.repeats}")
    if args.layouts:
        layouts_table(args)
    else:
        main_table(args)


if __name__ == "__main__":
    main()
