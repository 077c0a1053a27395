"""``dynsr zeroshot``: DualSR zero-shot blind super-resolution of each input image.

Trains DualSR's upsampler and KernelGAN downsampler from scratch on each image (the paper's
3000 iterations and schedule by default, bf16 where the CPU has it; ``--precision fp32`` is
the paper's run exactly; ``--iterations 1000`` is a quicker run that scales the schedule and
cost 0.80 dB on dynsr's DIV2KRK-style Set14 table; x4 = two x2 runs), then writes into DIR,
for an input ``NAME.ext``:

* ``NAME_x{s}.png``: the super-resolved image (8-bit);
* ``NAME_kernel_x{s}.npy``: the estimated kernel (float64, correlation orientation, centre
  of mass (s-1)/2 pixels down-right of the middle tap as DIV2KRK's: ``dynsr.degrade.blur``
  + ``subsample`` model the degradation onto MATLAB bicubic's LR grid) and
  ``NAME_kernel_x{s}.png``: the kernel enlarged (nearest neighbour), scaled to its maximum;
* ``NAME_log.csv`` and ``NAME_log.json``: every iteration's losses.

``--kernel-first`` runs two steps instead of DualSR's joint training: KernelGAN estimates the
kernel first (``--kernelgan-iterations``, default 3000), then the upsampler trains with the
downsampler fixed to it (1000 iterations unless ``--iterations`` says otherwise). Not the
paper's method, but on dynsr's DIV2KRK-style Set14 table (docs/zeroshot.md) it scored 0.18 dB above
joint DualSR's 3000 iterations (28.67 against 28.49 dB) in 258 against 668 s per image (one
thread beside other runs).

``--learned-kernel`` takes the kernel from dynsr's learned degradation estimator instead (a
fraction of a second), then trains the upsampler on many small crops (2000 iterations of
48-pixel HR crops unless ``--iterations`` says otherwise): the quick recipe, also for CPUs
without native bf16 (docs/zeroshot.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from dynsr.degrade import save_kernel
from dynsr.io import (
    ImageReadError,
    atomic_write_json,
    atomic_write_text,
    list_images,
    load_tensor,
    write_image,
)

KERNEL_PICTURE_SIZE = 256  # pixels per side of the enlarged kernel picture (at least)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zeroshot", help="DualSR zero-shot blind SR of each image",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_per_image_training_args(
        p, "upscaling factor", "DualSR's training iterations per x2 step (default 3000, the "
        "paper's; 1000 with --kernel-first, 2000 with --learned-kernel); the learning-rate "
        "steps at a quarter of them",
        default_iterations=None)
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="bf16 autocast + channels_last (default where the CPU has native "
                        "bf16) or fp32 (the paper's run exactly)")
    first = p.add_mutually_exclusive_group()
    first.add_argument("--kernel-first", action="store_true",
                       help="two steps: estimate the kernel with KernelGAN first, then train "
                            "the upsampler with the downsampler fixed to it (see above)")
    first.add_argument("--learned-kernel", action="store_true",
                       help="two steps: read the kernel with the learned degradation "
                            "estimator, then train the upsampler with the downsampler fixed "
                            "to it (the quick recipe, see above)")
    p.add_argument("--kernelgan-iterations", type=int, default=3000, metavar="N",
                   help="KernelGAN's iterations for --kernel-first (default 3000)")
    p.set_defaults(run=run)


def add_per_image_training_args(
    p: argparse.ArgumentParser, scale_help: str, iterations_help: str,
    default_iterations: int | None = 3000,
) -> None:
    """Arguments shared by the commands that train on each input image (zeroshot, kernels)."""
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="output folder (created if missing)")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2, help=scale_help)
    p.add_argument("--iterations", type=int, default=default_iterations, metavar="N",
                   help=iterations_help)
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")


def per_image_inputs(args: argparse.Namespace) -> list[Path]:
    """Check the shared arguments, list the input images and create the output folder."""
    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations must be positive, got {args.iterations}")
    paths = list_images(args.inputs)
    if not paths:
        raise ValueError(f"no images found in {' '.join(map(str, args.inputs))}")
    args.output.mkdir(parents=True, exist_ok=True)
    return paths


def write_kernel(output: Path, stem: str, kernel: torch.Tensor) -> None:
    """``stem.npy`` (the float64 array) and ``stem.png`` (enlarged, scaled to its maximum)."""
    save_kernel(output / f"{stem}.npy", kernel)
    array = kernel.detach().double().cpu().numpy()
    factor = max(1, -(-KERNEL_PICTURE_SIZE // array.shape[0]))
    picture = np.kron(np.clip(array, 0, None) / max(array.max(), 1e-12),
                      np.ones((factor, factor)))
    write_image(output / f"{stem}.png", picture)


def write_log(output: Path, stem: str, log: list[dict[str, float]]) -> None:
    """The per-iteration losses as CSV (one row per iteration) and JSON (a list)."""
    columns = list(log[0]) if log else []
    rows = [",".join(columns)]
    rows += [",".join(f"{entry.get(name, float('nan')):.9g}" for name in columns)
             for entry in log]
    atomic_write_text(output / f"{stem}.csv", "\n".join(rows) + "\n")
    atomic_write_json(output / f"{stem}.json", log)


def run(args: argparse.Namespace) -> int:
    # Imported late: keeps ``dynsr --help`` fast.
    from dynsr.zeroshot import zeroshot
    from dynsr.zeroshot.api import config_for, default_iterations, progress_bar, progress_total

    if args.kernelgan_iterations < 1:
        raise ValueError(f"--kernelgan-iterations must be positive, got "
                         f"{args.kernelgan_iterations}")
    paths = per_image_inputs(args)
    kernelgan_iterations = args.kernelgan_iterations if args.kernel_first else None
    if args.iterations is None:
        args.iterations = default_iterations(kernelgan_iterations, args.learned_kernel)
    config = config_for(args.iterations, args.precision, learned_kernel=args.learned_kernel)
    failed = 0
    for path in paths:
        try:
            image = load_tensor(path)  # 1 (grey) or 3 channels; DualSR runs on either
            bar, progress = progress_bar(path.name, progress_total(
                args.iterations, args.scale, kernelgan_iterations))
            with bar:
                sr, kernel, log = zeroshot(image, args.scale, iterations=args.iterations,
                                           seed=args.seed, progress=progress, config=config,
                                           kernelgan_iterations=kernelgan_iterations,
                                           learned_kernel=args.learned_kernel)
            write_image(args.output / f"{path.stem}_x{args.scale}.png", sr)
            write_kernel(args.output, f"{path.stem}_kernel_x{args.scale}", kernel)
            write_log(args.output, f"{path.stem}_log", log)
        except (ImageReadError, ValueError, FloatingPointError, OSError) as err:
            failed += 1
            print(f"dynsr zeroshot: {path}: failed: {err}", file=sys.stderr)
    print(f"super-resolved {len(paths) - failed} of {len(paths)} images into {args.output}")
    return 1 if failed else 0
