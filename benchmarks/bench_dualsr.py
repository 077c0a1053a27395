"""DualSR speed on this CPU: the straightforward way against dynsr's, PSNR against time.

One HR image (``--hr``, default: skimage's astronaut) is degraded DIV2KRK-style (its own
random 11x11 kernel, seed 0, blur then every 2nd pixel) and DualSR x2 is trained on the LR
image in several ways, each in the same run:

* ``straightforward``: fp32, NCHW, G_DN run layer by layer (7-5-3-1-1-1, 64 channels);
  timed over its first ``--straightforward-iterations`` iterations only (at several seconds
  an iteration, the paper's 3000 take hours here);
* ``fp32``: the same method with G_DN composed into one 13x13 stride-2 convolution (equal
  values and gradients up to float rounding, tested), fp32 NCHW, 3000 iterations: the
  quality reference;
* ``fast``: channels_last for G_UP and D_DN, composed G_DN, 3000 iterations, bf16 autocast
  where the CPU has native bf16 (fp32 where it has not, as ``dynsr zeroshot``'s default);
* ``fast-N``: the same with N iterations and the schedule scaled to N;
* ``kernel-first``: ``dynsr zeroshot --kernel-first``: KernelGAN's 3000 iterations, then
  ``fast-1000`` with G_DN fixed to its kernel (not the paper's joint training; KernelGAN's
  seconds are counted);
* ``learned-N``: ``dynsr zeroshot --learned-kernel --iterations N``: the learned estimator's
  kernel, then N upsampler iterations with G_DN fixed to it, the quick recipe's small crops,
  the command's default precision and layout (the estimator's seconds are counted).

Every ``--every`` iterations the current G_UP upscales the whole LR image and its PSNR-Y /
SSIM-Y against the HR image (crop 2, 8-bit rounding) is logged with the training seconds so
far (the time of these checkpoints is left out). Also timed: the final whole-image upscale
of a DIV2KRK-sized LR image (1000 x 680) with the fast G_UP, and G_UP's own forward and
backward per iteration (:func:`g_up_floor`): a lower bound for any way of running the paper's
3000 iterations.

    python benchmarks/bench_dualsr.py [--hr IMAGE | --lr IMAGE|hubble]
        [--ways straightforward fast-1000] [--every 250] [--json FILE]
    python benchmarks/bench_dualsr.py --floor-only [--json FILE]   # G_UP's floor alone
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import skimage.data
import torch

from dynsr.evaluation import Degradation, QualityCurve, modcrop
from dynsr.hardware import cpu_supports_bf16, describe_cpu, timing_context
from dynsr.io import load_tensor
from dynsr.zeroshot.api import config_for
from dynsr.zeroshot.dualsr import DualSRConfig, zeroshot

KERNELGAN_ITERATIONS = 3000  # the kernel-first way's KernelGAN (dynsr zeroshot's default)
# bf16 where the CPU has it natively (the fast ways' precision there), else fp32.
FAST_PRECISION = "bf16" if cpu_supports_bf16() else "fp32"


def way_config(way: str, straightforward_iterations: int) -> DualSRConfig:
    if way == "straightforward":
        # The paper's schedule, stopped early: only its speed is measured.
        return DualSRConfig(iterations=straightforward_iterations, lr_step=750,
                            composed_g_dn=False)
    if way == "fp32":
        return DualSRConfig(iterations=3000)
    if way.startswith("learned-"):  # dynsr zeroshot --learned-kernel --iterations N
        return config_for(int(way.split("-", 1)[1]), learned_kernel=True)
    # kernel-first's upsampler step is fast-1000 (its KernelGAN step: run_way).
    iterations = {"fast": 3000, "kernel-first": 1000}.get(way) or int(way.split("-", 1)[1])
    return DualSRConfig(iterations=iterations, precision=FAST_PRECISION, channels_last=True)


def run_way(way: str, lr: torch.Tensor, hr: torch.Tensor | None, every: int,
            straightforward_iterations: int) -> dict:
    """One way, timed: training seconds (PSNR checkpoints left out), then DualSR's final
    whole-image upscale; with an HR image, the PSNR curve every ``every`` iterations."""
    config = way_config(way, straightforward_iterations)

    def report(point: dict) -> None:
        print(f"{way:<16} it {point['iteration']:5d}  {point['seconds']:7.1f} s  "
              f"PSNR-Y {point['psnr_y']:.3f}  SSIM-Y {point['ssim_y']:.4f}", flush=True)

    curve = QualityCurve(hr, every, config.iterations, 2, report=report)
    zeroshot(lr, 2, config.iterations, seed=0, config=config, checkpoint=curve,
             kernelgan_iterations=KERNELGAN_ITERATIONS if way == "kernel-first" else None,
             learned_kernel=way.startswith("learned-"))
    total = curve.elapsed()
    return {"way": way, "iterations": config.iterations, "seconds": round(total, 1),
            "training_s": round(curve.trained, 1),
            "final_upscale_s": round(total - curve.trained, 1),
            # KernelGAN's seconds are in kernel-first's training: no per-iteration figure.
            "s_per_iteration": (None if way == "kernel-first"
                                else round(curve.trained / config.iterations, 4)),
            "curve": curve.points}


def per_iteration(result: dict) -> str:
    if result["s_per_iteration"] is None:
        return f"after KernelGAN's {KERNELGAN_ITERATIONS} it"
    return f"{result['s_per_iteration']:.3f} s/it"




def g_up_floor(repeats: int = 30, precision: str = "bf16") -> dict:
    """What G_UP's own work costs per DualSR iteration, channels_last and ``precision`` (bf16
    autocast as the fast way on CPUs with native bf16; fp32 on the others):
    forward and backward on the iteration's two batches (the LR crops, 2 x 3 x 64 x 64, for
    the forward cycle and the interpolation loss; G_DN's output of the HR crops, 2 x 3 x 58 x
    58, for the backward cycle). Every iteration of joint DualSR does at least this, so
    3000 times it bounds the paper's 3000 iterations from below on this CPU, whatever else
    is made faster. FLOPs: 2 per multiply-add, backward counted as the two passes it runs
    (input gradients, except the first layer's, and weight gradients)."""
    from dynsr.zeroshot.dualsr import Upsampler

    model = Upsampler().to(memory_format=torch.channels_last)
    batches = [torch.rand(2, 3, side, side).contiguous(memory_format=torch.channels_last)
               for side in (64, 58)]
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    macs_per_pixel = sum(c.in_channels * c.out_channels * 9 for c in convs)
    first = convs[0].in_channels * convs[0].out_channels * 9
    hr_pixels = sum(b.shape[0] * (2 * b.shape[-1]) ** 2 for b in batches)
    flops = 2 * hr_pixels * (macs_per_pixel + (macs_per_pixel - first) + macs_per_pixel)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = sum(model(b).float().mean() for b in batches)
        loss.backward()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    seconds = (time.perf_counter() - start) / repeats
    return {"precision": precision, "s_per_iteration": round(seconds, 4),
            "gflop_per_iteration": round(flops / 1e9, 1),
            "gflop_per_s": round(flops / seconds / 1e9), "floor_3000_s": round(3000 * seconds)}


def time_whole_image_upscale() -> float:
    from dynsr.zeroshot.dualsr import Upsampler

    model = Upsampler().to(memory_format=torch.channels_last).eval()
    image = torch.rand(1, 3, 680, 1000).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16,
                                         enabled=FAST_PRECISION == "bf16"):
        model(image[..., :64, :64])
        start = time.perf_counter()
        model(image)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hr", type=Path, help="HR image (default: skimage's astronaut)")
    parser.add_argument("--lr", metavar="PATH|hubble",
                        help="time the ways on this LR image as it is (no HR, no PSNR); "
                             "'hubble': skimage's hubble_deep_field cropped to 680 x 1000, "
                             "a DIV2KRK-sized LR photo")
    parser.add_argument("--ways", nargs="+",
                        default=["straightforward", "fp32", "fast", "fast-1000"])
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--straightforward-iterations", type=int, default=30)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--floor-only", action="store_true",
                        help="only G_UP's forward + backward per iteration (g_up_floor)")
    args = parser.parse_args()
    if args.floor_only:
        floor = {**g_up_floor(precision=FAST_PRECISION), "cpu": timing_context()}
        print(json.dumps(floor))
        if args.json:
            args.json.write_text(json.dumps({"g_up_floor": floor}, indent=2) + "\n")
        return 0
    hr = None
    if args.lr == "hubble":
        photo = skimage.data.hubble_deep_field()[:680, :1000]
        lr, name = torch.from_numpy(photo).permute(2, 0, 1).float() / 255, "hubble_deep_field"
    elif args.lr is not None:
        lr, name = load_tensor(Path(args.lr)).float(), Path(args.lr).name
    else:
        if args.hr is None:
            hr = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).double() / 255
            name = "astronaut.png"
        else:
            hr, name = load_tensor(args.hr).double(), args.hr.name
        hr = modcrop(hr, 2)
        degradation = Degradation(2, downsample="direct", random_kernel="div2krk")
        lr = degradation.apply(hr, name).float()
    print(f"{name}: HR {'-' if hr is None else tuple(hr.shape[-2:])}, "
          f"LR {tuple(lr.shape[-2:])}, {torch.get_num_threads()} threads, {describe_cpu()}")
    results = [run_way(way, lr, hr, args.every, args.straightforward_iterations)
               for way in args.ways]
    base = next((r for r in results if r["way"] == "straightforward"), None)
    for r in results:
        # Ratio of whole runs: the straightforward way's seconds per iteration times 3000,
        # plus its own final upscale.
        whole_base = (None if base is None else
                      base["s_per_iteration"] * 3000 + base["final_upscale_s"])
        ratio = "-" if base is None or r is base else f"{whole_base / r['seconds']:.2f}x"
        final = f"  PSNR-Y {r['curve'][-1]['psnr_y']:.3f}" if r["curve"] else ""
        print(f"{r['way']:<16} {r['iterations']:5d} it  {r['seconds']:7.1f} s  "
              f"({per_iteration(r)}; straightforward 3000 it / this: {ratio})"
              f"{final}")
    whole = time_whole_image_upscale()
    print(f"final upscale of a 1000x680 LR image (fast G_UP): {whole:.1f} s")
    floor = g_up_floor(precision=FAST_PRECISION)
    print(f"G_UP's forward + backward alone ({FAST_PRECISION}, channels_last): "
          f"{floor['s_per_iteration']:.3f} s per iteration, {floor['gflop_per_iteration']} "
          f"GFLOP at {floor['gflop_per_s']} GFLOP/s: 3000 iterations take at least "
          f"{floor['floor_3000_s']} s on this CPU")
    if args.json:
        args.json.write_text(json.dumps({"image": name, "cpu": timing_context(), "ways": results,
                                         "whole_image_upscale_s": round(whole, 2),
                                         "g_up_floor": floor}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
