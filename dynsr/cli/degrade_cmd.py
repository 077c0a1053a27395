"""``dynsr degrade``: make LR images from HR images (blur, downsample, quantise, noise).

Each HR image is cropped at the top-left to a multiple of the scale, then degraded:
optional blur (replicate padding) → MATLAB bicubic or direct downsampling → 8-bit rounding →
optional Gaussian noise (0..255 scale, seeded per file name) → clamped and rounded, written as
an 8-bit PNG with the HR file's name. The same flags in ``dynsr eval --hr`` make the same LR
images in memory, except that there the noisy image is neither clamped nor rounded, as the
papers test (SRMD, UDVD); without noise the two are identical.
With ``--random-kernel``, each image's kernel is also written, as ``OUT/kernels/NAME.npy``
(float32), the ground truth for kernel estimation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dynsr.cli.options import add_degradation_args, degradation_from_args
from dynsr.degrade import save_kernel
from dynsr.evaluation import modcrop
from dynsr.io import ImageReadError, list_images, load_tensor, write_image


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("degrade", help="make LR images from HR images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="HR images or folders")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="output folder (created if missing)")
    p.add_argument("--recursive", action="store_true",
                   help="look into sub-folders, keeping their structure in the output")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_degradation_args(p)
    p.set_defaults(run=run)


def _relative_name(path: Path, roots: list[Path]) -> Path:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root)
    return Path(path.name)


def run(args: argparse.Namespace) -> int:
    degradation = degradation_from_args(args)
    paths = list_images(args.inputs, recursive=args.recursive)
    if not paths:
        raise ValueError(f"no images found in {' '.join(map(str, args.inputs))}")
    done = skipped = failed = 0
    for path in tqdm(paths, desc=f"degrade x{degradation.scale}", unit="img", disable=None):
        target = args.output / _relative_name(path, args.inputs).with_suffix(".png")
        if target.exists() and not args.overwrite:
            skipped += 1
            tqdm.write(f"dynsr degrade: {target} exists, skipped (use --overwrite)",
                       file=sys.stderr)
            continue
        try:
            hr = modcrop(load_tensor(path).double(), degradation.scale)
            lr = degradation.apply(hr, path.name, as_file=True)
            if degradation.per_image:
                kernel_path = args.output / "kernels" / _relative_name(path, args.inputs)
                save_kernel(kernel_path.with_suffix(".npy"), degradation.kernel(path.name),
                            dtype=np.float32)
            write_image(target, lr)
        except (ImageReadError, ValueError, OSError) as err:
            failed += 1
            tqdm.write(f"dynsr degrade: failed: {err}", file=sys.stderr)
            continue
        done += 1
    print(f"degraded {done} images into {args.output} ({skipped} skipped, {failed} failed)")
    return 1 if failed else 0
