"""How long blind SR takes: the learned estimator alone, and whole `dynsr upscale --blind` runs.

Measured in one run, on this machine (its CPU model and flags are recorded):

* the estimator alone on a 512×512 LR (scikit-image's astronaut photo taken as the LR),
  fp32, median of 5 after a warm-up;
* ``dynsr upscale --model udvd-lite --blind --precision fp32`` on a 384×384 LR at x2, the
  whole command as a user runs it (process start, loading, estimate, UDVD, writing), with the
  learned estimator (default: its estimate corrected by two more UDVD passes), the learned
  estimator without correction (``--blind-correction 0``), and ``--blind-method kernelgan``
  (the path before the estimator, 3,000 KernelGAN iterations): the ratios are the speed-ups.

    python benchmarks/blind_speed.py [--threads 2] [--skip-kernelgan] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import skimage.data
import torch

from dynsr.blind import load_estimator
from dynsr.hardware import cpu_flags, describe_cpu
from dynsr.io import atomic_write_json, write_image


def time_estimator(threads: int) -> dict:
    torch.set_num_threads(threads)
    lr = torch.from_numpy(skimage.data.astronaut().copy()).permute(2, 0, 1).float() / 255
    estimator = load_estimator(2)
    estimator.estimate(lr[None])  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        estimator.estimate(lr[None])
        times.append(time.perf_counter() - start)
    return {"lr_size": list(lr.shape[-2:]), "median_s": round(statistics.median(times), 4),
            "runs_s": [round(t, 4) for t in times]}


def time_command(method: str, threads: int, folder: Path, *flags: str) -> float:
    photo = torch.from_numpy(skimage.data.coffee()[:384, 100:484].copy())
    source = folder / "in" / "coffee384.png"
    if not source.exists():
        write_image(source, photo.permute(2, 0, 1).float() / 255)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "dynsr", "upscale", str(source), "-o",
               str(folder / method), "--model", "udvd-lite", "--scale", "2", "--blind",
               "--blind-method", method, "--precision", "fp32", "--overwrite", *flags]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-kernelgan", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("results/blind/speed.json"))
    args = ap.parse_args()
    result = {"cpu": describe_cpu(), "flags": cpu_flags(), "threads": args.threads,
              "torch": torch.__version__, "estimator_512": time_estimator(args.threads)}
    print(f"estimator alone, 512x512 LR: {result['estimator_512']['median_s']:.3f} s")
    with tempfile.TemporaryDirectory() as folder:
        learned = time_command("learned", args.threads, Path(folder))
        result["upscale_blind_384_x2_learned_s"] = round(learned, 2)
        print(f"dynsr upscale --blind (learned), 384x384 x2: {learned:.1f} s")
        plain = time_command("learned", args.threads, Path(folder), "--blind-correction", "0")
        result["upscale_blind_384_x2_learned_no_correction_s"] = round(plain, 2)
        print(f"dynsr upscale --blind --blind-correction 0: {plain:.1f} s")
        if not args.skip_kernelgan:
            kernelgan = time_command("kernelgan", args.threads, Path(folder))
            result["upscale_blind_384_x2_kernelgan_s"] = round(kernelgan, 2)
            result["speedup"] = round(kernelgan / learned, 1)
            print(f"dynsr upscale --blind --blind-method kernelgan: {kernelgan:.1f} s "
                  f"({kernelgan / learned:.1f}x the learned path's time)")
    atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
