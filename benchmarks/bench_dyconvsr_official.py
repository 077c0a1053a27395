"""DyConvSR x2 on one 640×360 frame: dynsr end to end against the official architecture's bare
forward, measured in the same run.

The official network is ``model/arch.py`` of github.com/doantienthongbku/DyConvSR, read from
its public snapshot (``--official``, a git directory; bring it with the tools that fetch
repositories; nothing of it is copied into dynsr). Its imports of torchvision, tensorboard
and its config are stubbed in a temporary folder: ``torchvision.transforms.GaussianBlur`` by
the same computation (reflect padding, a 5×5 kernel of sigma 1, a depthwise convolution),
the rest by empty modules. It runs in fp32, NCHW, under ``torch.inference_mode``, on a float
tensor already in memory: the *bare* forward, no image conversion.

dynsr's ways, each timed on the same frame:

* ``module fp32, plain forward``: dynsr's module as written (pixel-unshuffle, convs, GELU,
  pixel-shuffles), fp32 NCHW, bare forward (the straightforward way);
* ``module fp32 channels_last, plain forward``;
* ``module fp32 (fused CPU path)``: the module's default fp32 CPU inference
  (``DyConvSR._fused_inference``: oneDNN post-ops, reordered sub-pixels);
* ``upscale fp32``: ``dynsr.load("dyconvsr", 2, precision="fp32").upscale(frame)`` on a
  uint8 (360, 640, 3) array, returning the uint8 (720, 1280, 3) array: conversion, any
  tiling, the forward and the rounding back;
* ``upscale bf16`` (CPUs with native bf16) and ``upscale default``: the same in bf16 and
  in the default precision for this CPU.

``dynsr.load`` has glibc keep freed memory for reuse (``dynsr.malloc.keep_freed_memory``), so
a frame's large temporaries are not faulted in afresh on every call. The official forward is
timed both as its own code runs (``official forward fp32``, the baseline of every ratio) and
with the same malloc setting (``official forward fp32, freed memory kept``), to show how much
of a ratio that setting makes.

Median of ``--repeats`` calls (default 40), in blocks of ten: each block a fresh process
running one way alone (two untimed calls, then ten timed), as a program that upscales frame
after frame would; the ways take turns block by block, so that a slower spell of a shared
machine does not fall on one way only. Every figure is reported with the CPU model,
its flags, the SIMD level PyTorch dispatches to (``ATEN_CPU_CAPABILITY`` can lower it) and
oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``), so an AVX2 emulation on a bigger CPU is never
mistaken for an AVX2 machine:

    python benchmarks/bench_dyconvsr_official.py --official PATH/TO/DyConvSR.git \\
        [--threads 2] [--repeats 40] [--json results/speed/dyconvsr_official_CPU.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import dynsr
from dynsr.api import default_precision
from dynsr.hardware import cpu_supports_bf16, timing_context
from dynsr.io import atomic_write_json
from dynsr.malloc import keep_freed_memory
from dynsr.models import create

OFFICIAL_FILES = ("model/arch.py", "model/modules/dynamic_conv.py", "model/modules/modules.py")

_TORCHVISION_STUB = '''
import torch
import torch.nn.functional as F


class GaussianBlur(torch.nn.Module):
    """torchvision's GaussianBlur for a fixed sigma: reflect padding, depthwise 2-D kernel."""

    def __init__(self, kernel_size, sigma):
        super().__init__()
        half = (kernel_size - 1) * 0.5
        x = torch.linspace(-half, half, kernel_size)
        k = torch.exp(-0.5 * (x / sigma) ** 2)
        k = k / k.sum()
        self.register_buffer("kernel", torch.outer(k, k)[None, None])
        self.pad = kernel_size // 2

    def forward(self, img):
        c = img.shape[-3]
        padded = F.pad(img, [self.pad] * 4, mode="reflect")
        return F.conv2d(padded, self.kernel.expand(c, 1, -1, -1).to(img.dtype), groups=c)
'''


def official_model(git_dir: Path, folder: Path) -> torch.nn.Module:
    """The official DyConvSR x2 (its defaults: 32 features, one dynamic block, GELU, HFB, SA)."""
    for name in OFFICIAL_FILES:
        blob = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{name}"],
                              check=True, capture_output=True).stdout
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(blob)
    for package in ("model", "model/modules"):
        (folder / package / "__init__.py").write_text("")
    (folder / "config.py").write_text("")
    (folder / "tensorboard").mkdir()
    (folder / "tensorboard" / "__init__.py").write_text("summary = None\n")
    (folder / "torchvision").mkdir()
    (folder / "torchvision" / "__init__.py").write_text("from . import transforms\n")
    (folder / "torchvision" / "transforms.py").write_text(_TORCHVISION_STUB)
    sys.path.insert(0, str(folder))
    arch = importlib.import_module("model.arch")
    return arch.DyConvSR(num_channels=3, num_feats=32, num_blocks=1, upscale=2, act="gelu",
                         use_hfb=True, spatial_attention=True).eval()


WAYS = ("official forward fp32", "official forward fp32, freed memory kept",
        "module fp32, plain forward",
        "module fp32 channels_last, plain forward", "module fp32 (fused CPU path)",
        "upscale fp32", "upscale bf16", "upscale default")


def build_way(name: str, official: Path, frame: np.ndarray) -> Callable[[], object]:
    """The call that one way times, with everything it needs made beforehand."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    if name.startswith("official forward fp32"):
        if "freed memory kept" in name:
            keep_freed_memory()
        with tempfile.TemporaryDirectory() as folder:
            model = official_model(official, Path(folder))
        return inference(lambda: model(x))
    if name.startswith("module"):
        module = create("dyconvsr", scale=2).eval()
        # False: the module as written (the straightforward way).
        module.fused_cpu_inference = "fused" in name
        if "channels_last" in name:
            module = module.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return inference(lambda: module(x))
    precision = {"upscale fp32": "fp32", "upscale bf16": "bf16"}.get(name)
    upscaler = dynsr.load("dyconvsr", 2, precision=precision)
    return lambda: upscaler.upscale(frame)


def inference(run: Callable[[], object]) -> Callable[[], object]:
    def call() -> object:
        with torch.inference_mode():
            return run()
    return call


def run_block(name: str, official: Path, frame: np.ndarray, threads: int, calls: int,
              conn) -> None:
    """One way in a fresh process: build it, two untimed calls, then ``calls`` timed ones."""
    torch.set_num_threads(threads)
    run = build_way(name, official, frame)
    run()
    run()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    conn.send(times)


def timed(names: list[str], official: Path, frame: np.ndarray, threads: int, repeats: int,
          block: int = 10) -> dict[str, float]:
    """Median seconds per call of each way over ``repeats`` timed calls.

    Each block of ``block`` calls runs in a fresh process of its own, alone on the machine,
    as a program that upscales frame after frame would, with nothing of the other ways in
    its memory or beside it. The ways take turns block by block, the order reversed every
    round, so that a slower spell of a shared machine (this VM's speed drifts by ±20% within
    seconds) falls on all ways alike.
    """
    context = mp.get_context("spawn")
    times: dict[str, list[float]] = {name: [] for name in names}
    order = list(names)
    while min(len(values) for values in times.values()) < repeats:
        for name in order:
            parent, child = context.Pipe(duplex=False)
            process = context.Process(target=run_block,
                                      args=(name, official, frame, threads, block, child))
            process.start()
            times[name] += parent.recv()
            process.join()
        order.reverse()
    return {name: statistics.median(values[:repeats]) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, required=True,
                        help="git directory of doantienthongbku/DyConvSR's snapshot")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--size", default="640x360", help="LR frame WxH (default 640x360)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    # A real photo's statistics matter little for speed; a fixed random frame keeps it simple.
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    names = [name for name in WAYS if name != "upscale bf16" or cpu_supports_bf16()]
    rows = timed(names, args.official, frame, args.threads, args.repeats)
    rows[f"upscale default ({default_precision(torch.device('cpu'), 'dyconvsr')})"] = rows.pop(
        "upscale default")
    base = rows["official forward fp32"]
    machine = timing_context(args.threads)
    result = {"frame": f"{width}x{height} uint8 RGB, x2", "repeats": args.repeats,
              "machine": machine,
              "seconds": {k: round(v, 5) for k, v in rows.items()},
              "speedup_vs_official": {k: round(base / v, 3) for k, v in rows.items()}}
    print(json.dumps(machine))
    print("| way | ms / frame | vs official forward |\n|---|---|---|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1000:.1f} | {base / seconds:.2f}x |")
    if args.json:
        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
