"""How well and how fast is the degradation read? The learned estimator against KernelGAN.

Set14's 14 HR images, each degraded with seeded random degradations that no training or
validation sample used (seeds 9000 + 100·condition + image index):

* ``div2krk``: a DIV2KRK-style kernel (11×11 at x2, the analytic 31×31 at x4), every s-th
  pixel kept, no noise (the DIV2KRK-style table's degradation);
* ``isotropic``: UDVD's Eq. 1, width ~ U[0.2, 3.0], sigma ~ U[0, 75], bicubic, unclipped;
* ``anisotropic``: SRMD's anisotropic Gaussians (variances in [0.1, 10]), sigma ~ U[0, 50].

Each LR is read by the learned estimator (``dynsr.blind``, one map per image) and, for
``div2krk`` (what KernelGAN is built for), by KernelGAN (3000 iterations) as ``dynsr eval
--blind-method kernelgan`` does; the noise level by the estimator and by the patch-PCA
estimator KernelGAN's path uses. Per LR:

* ``kernel_l2``: ‖k̂ − k‖ over the 15×15 taps, where k is the kernel UDVD should be told
  (the true kernel, or for ``div2krk`` its least-squares UDVD equivalent, as the GT-kernel
  row tells UDVD) and k̂ the estimate;
* ``lr_psnr``: PSNR (RGB, peak 1) between the noise-free LR regenerated from the HR with k
  and with k̂ (UDVD's convention: blur, then MATLAB bicubic), 8 border pixels left out;
* ``sigma_error``: |σ̂ − σ| on 0..255;
* ``seconds``: the estimate's time.

Per-image results are cached in OUT/CONDITION/METHOD/NAME.json (a resumed run skips them);
OUT/summary_xS.json holds the means. Threads: ``--threads`` (default 2).

    python benchmarks/blind_estimator.py --data ../shared/data/test/Set14/HR \\
        --out results/blind/accuracy [--scale 2] [--methods learned kernelgan]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from dynsr.blind import estimate_blind_degradation
from dynsr.degrade import (
    anisotropic_gaussian,
    degrade,
    div2krk_kernel,
    isotropic_gaussian,
    kernel_code,
    sample_anisotropic_params,
    udvd_kernel_from_direct,
)
from dynsr.degrade.noise_level import estimate_noise_level
from dynsr.hardware import describe_cpu
from dynsr.io import atomic_write_json, list_images, read_image

CONDITIONS = ("div2krk", "isotropic", "anisotropic")
BORDER = 8


def _modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    return image[..., : h - h % scale, : w - w % scale]


def make_case(hr: torch.Tensor, scale: int, condition: str, seed: int) -> dict:
    """The LR of one HR image under one seeded degradation, and what UDVD should be told."""
    gen = torch.Generator().manual_seed(seed)
    if condition == "div2krk":
        kernel = div2krk_kernel(scale, gen, dtype=torch.float64)
        lr = degrade(hr, scale, kernel=kernel.float(), downsample="direct")
        return {"lr": lr, "udvd_kernel": udvd_kernel_from_direct(kernel, scale), "sigma": 0.0}
    if condition == "isotropic":
        width = 0.2 + 2.8 * float(torch.rand((), generator=gen, dtype=torch.float64))
        sigma = 75.0 * float(torch.rand((), generator=gen, dtype=torch.float64))
        kernel = isotropic_gaussian(15, torch.tensor([width], dtype=torch.float64),
                                    dtype=torch.float64)[0]
    else:
        l1, l2, theta = sample_anisotropic_params(1, gen)
        sigma = 50.0 * float(torch.rand((), generator=gen, dtype=torch.float64))
        kernel = anisotropic_gaussian(15, l1, l2, theta, dtype=torch.float64)[0]
    lr = degrade(hr, scale, kernel=kernel.float(), noise=sigma, generator=gen)
    return {"lr": lr, "udvd_kernel": kernel, "sigma": sigma}


def regenerated_psnr(hr: torch.Tensor, scale: int, k_true: torch.Tensor,
                     k_est: torch.Tensor) -> float:
    a = degrade(hr, scale, kernel=k_true.float(), quantize=False)
    b = degrade(hr, scale, kernel=k_est.float(), quantize=False)
    a, b = (x[..., BORDER:-BORDER, BORDER:-BORDER].double() for x in (a, b))
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def measure(hr: torch.Tensor, scale: int, case: dict, method: str) -> dict:
    lr = case["lr"]
    start = time.perf_counter()
    # The reading itself: one estimate per image, the kernel as read (not --blind's local,
    # isotropic defaults, which serve UDVD rather than describe the blur).
    found = estimate_blind_degradation(lr, scale, method, smoothing=None, isotropic=False)
    seconds = time.perf_counter() - start
    k_est = found.kernel().double()
    k_true = case["udvd_kernel"].double()
    size = max(k_est.shape[-1], k_true.shape[-1])
    pad = [(size - k.shape[-1]) // 2 for k in (k_est, k_true)]
    k_est = torch.nn.functional.pad(k_est, [pad[0]] * 4)
    k_true = torch.nn.functional.pad(k_true, [pad[1]] * 4)
    result = {"kernel_l2": float((k_est - k_true).norm()),
              "lr_psnr": regenerated_psnr(hr, scale, k_true, k_est),
              "code_l2": float((found.dmap[0, :15].mean(dim=(-2, -1)).double()
                                - kernel_code(case["udvd_kernel"].double())).norm()),
              "sigma": case["sigma"], "sigma_est": found.noise,
              "sigma_error": abs(found.noise - case["sigma"]), "seconds": seconds}
    if method == "kernelgan":
        # KernelGAN's path reads the noise with the patch-PCA estimator (in found.noise).
        result["noise_estimator"] = "patch PCA"
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("results/blind/accuracy"))
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--methods", nargs="+", default=["learned", "kernelgan"])
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = list_images([args.data])
    summary: dict = {"scale": args.scale, "data": str(args.data), "cpu": describe_cpu(),
                     "threads": args.threads, "torch": torch.__version__, "rows": {}}
    for condition in args.conditions:
        for method in args.methods:
            if method == "kernelgan" and condition != "div2krk":
                continue
            rows = []
            for i, path in enumerate(paths):
                target = args.out / f"x{args.scale}" / condition / method / f"{path.stem}.json"
                if target.exists():
                    rows.append(json.loads(target.read_text()))
                    continue
                hr = _modcrop(read_image(path).pixels, args.scale)
                hr = hr.expand(3, -1, -1) if hr.shape[0] == 1 else hr
                case = make_case(hr, args.scale, condition,
                                 9000 + 100 * CONDITIONS.index(condition) + i)
                row = {"name": path.stem, **measure(hr, args.scale, case, method)}
                if method == "learned":
                    start = time.perf_counter()
                    row["sigma_pca"] = estimate_noise_level(case["lr"].clamp(-1, 2))
                    row["sigma_pca_error"] = abs(row["sigma_pca"] - case["sigma"])
                    row["sigma_pca_seconds"] = time.perf_counter() - start
                atomic_write_json(target, row)
                rows.append(row)
                print(f"{condition} {method} {path.stem}: kernel L2 {row['kernel_l2']:.4f}, "
                      f"LR regen {row['lr_psnr']:.2f} dB, sigma {row['sigma']:.1f} -> "
                      f"{row['sigma_est']:.1f}, {row['seconds']:.1f} s", flush=True)
            keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
            mean = {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in keys}
            summary["rows"][f"{condition}/{method}"] = {"images": len(rows), **mean}
            print(f"== {condition} {method}: {json.dumps(mean)}", flush=True)
    atomic_write_json(args.out / f"summary_x{args.scale}.json", summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
