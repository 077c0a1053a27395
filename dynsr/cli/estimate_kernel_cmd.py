"""``dynsr estimate-kernel``: KernelGAN blind kernel estimation for each input image.

Writes ``NAME_kernel_x{s}.npy`` (float64, correlation orientation, as ``dynsr.degrade.blur``
applies it; centre of mass (s-1)/2 pixels down-right of the middle tap, as KernelGAN and
DIV2KRK: blurring and keeping pixels 0, s, 2s, ... puts the LR on MATLAB bicubic's grid; x4
is the analytic composition of the x2 estimate) and
an enlarged picture ``NAME_kernel_x{s}.png`` into DIR.
"""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from dynsr.cli.zeroshot_cmd import add_per_image_training_args, per_image_inputs, write_kernel
from dynsr.io import ImageReadError, load_tensor


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate-kernel", help="KernelGAN blur-kernel estimation",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_per_image_training_args(p, "downscaling factor",
                                "training iterations (default 3000, KernelGAN's)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dynsr.zeroshot import estimate_kernel  # imported late: keeps ``dynsr --help`` fast

    paths = per_image_inputs(args)
    failed = 0
    for path in paths:
        try:
            image = load_tensor(path)
            with tqdm(total=args.iterations, desc=path.name, unit="it", disable=None) as bar:
                def progress(iteration: int, losses: dict[str, float], bar=bar) -> None:
                    bar.update(1)
                    bar.set_postfix(gan=f"{losses['gan']:.3f}", d=f"{losses['d']:.3f}",
                                    refresh=False)

                kernel = estimate_kernel(image, args.scale, iterations=args.iterations,
                                         seed=args.seed, progress=progress)
            write_kernel(args.output, f"{path.stem}_kernel_x{args.scale}", kernel)
        except (ImageReadError, ValueError, OSError) as err:
            failed += 1
            print(f"dynsr estimate-kernel: {path}: failed: {err}", file=sys.stderr)
    print(f"estimated {len(paths) - failed} of {len(paths)} kernels into {args.output}")
    return 1 if failed else 0
