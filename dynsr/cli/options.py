"""Command-line options shared by several commands (the degradation flags)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from dynsr.blind import (
    BLIND_KERNEL,
    BLIND_METHODS,
    BLIND_SMOOTHING,
    resolve_blind_method,
)
from dynsr.degrade import load_kernel
from dynsr.evaluation import RANDOM_KERNELS, Degradation
from dynsr.io import read_image


def add_degradation_args(parser: argparse.ArgumentParser,
                         scale_help: str | None = None) -> None:
    """The degradation flags; ``scale_help``: ``--scale`` is optional, with this help."""
    g = parser.add_argument_group("degradation (how LR images are made from HR images)")
    g.add_argument("--scale", type=int, required=scale_help is None, choices=(2, 3, 4),
                   help=scale_help or "downscaling factor")
    blur = g.add_mutually_exclusive_group()
    blur.add_argument("--blur", type=level_or_ramp, metavar="WIDTH|LEFT:RIGHT",
                      help="isotropic Gaussian blur of this width (sigma, HR pixels) first; "
                           "LEFT:RIGHT: the width rises linearly across the image (UDVD's "
                           "Table 3: 0.2:2)")
    blur.add_argument("--kernel", type=Path, metavar="FILE",
                      help="blur kernel file (.npy, .npz, .txt, .csv; square, odd size)")
    blur.add_argument("--realistic", action="store_true",
                      help="instead: a random real-world-like degradation per image (mixed "
                           "blur and downsampling, sub-pixel shift, noise, JPEG; "
                           "dynsr.degrade.realistic with its default ranges), seeded by "
                           "--seed and the file name; DDet's held-out test pairs")
    blur.add_argument("--random-kernel", choices=RANDOM_KERNELS,
                      help="a random kernel per image, seeded by --seed and the file name: "
                           "div2krk = KernelGAN's DIV2KRK test kernels (11x11 anisotropic "
                           "Gaussian with multiplicative noise; x4: its analytic x4 "
                           "composition); use with --downsample direct, as DIV2KRK")
    g.add_argument("--kernel-size", type=int, default=15, metavar="K",
                   help="size of the --blur kernel (default 15, as SRMD/UDVD)")
    g.add_argument("--noise", type=level_or_ramp, default=0.0, metavar="SIGMA|LEFT:RIGHT",
                   help="Gaussian noise level on the 0..255 scale, added after 8-bit "
                        "quantisation (default 0); LEFT:RIGHT: rising linearly across the "
                        "image (UDVD's Table 3: 5:50)")
    g.add_argument("--downsample", choices=("bicubic", "direct"), default="bicubic",
                   help="bicubic: MATLAB imresize(1/s) (default); direct: keep every s-th "
                        "pixel after the blur (DIV2KRK/KernelGAN style)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")


def level_or_ramp(text: str) -> float | tuple[float, float]:
    """A number, or ``LEFT:RIGHT``: a value rising linearly from the left to the right
    column (argparse type)."""
    try:
        if ":" in text:
            left, right = text.split(":")
            return float(left), float(right)
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or LEFT:RIGHT (two numbers), got {text!r}") from None


def degradation_from_args(args: argparse.Namespace) -> Degradation:
    """The :class:`~dynsr.evaluation.Degradation` the flags describe (``ValueError`` naming
    the flag when they do not fit together)."""
    noises = args.noise if isinstance(args.noise, tuple) else (args.noise,)
    if min(noises) < 0:
        raise ValueError(f"--noise must be >= 0, got {args.noise}")
    widths = args.blur if isinstance(args.blur, tuple) else (args.blur,)
    if args.blur is not None and min(widths) <= 0:
        raise ValueError(f"--blur must be > 0, got {args.blur}")
    if args.kernel_size < 1 or args.kernel_size % 2 == 0:
        raise ValueError(f"--kernel-size must be odd and positive, got {args.kernel_size}")
    random_kernel = getattr(args, "random_kernel", None)
    if random_kernel == "div2krk" and args.scale not in (2, 4):
        raise ValueError(f"--random-kernel div2krk exists for x2 and x4, not x{args.scale}")
    realistic_lr = bool(getattr(args, "realistic", False))
    if realistic_lr and (args.noise or args.downsample != "bicubic"):
        raise ValueError("--realistic draws its own noise and downsampling: leave out "
                         "--noise and --downsample")
    return Degradation(args.scale, args.blur, args.kernel, args.kernel_size, args.noise,
                       args.downsample, args.seed, random_kernel, realistic_lr)


def add_blind_args(group: argparse._ArgumentGroup, *, kernelgan_iterations_flag: bool,
                   pictures_flag: bool = True) -> None:
    """``--blind`` and its options, for commands that run non-blind models (udvd)."""
    group.add_argument("--blind", action="store_true",
                       help="non-blind models (udvd): read each LR image's blur and noise off "
                            "the image (--blind-method) instead of being told them")
    group.add_argument("--blind-method", choices=BLIND_METHODS, default="auto",
                       help="learned: the shipped degradation estimator (a fraction of a "
                            "second); kernelgan: KernelGAN trained on the image and patch-PCA "
                            "noise (minutes, x2 and x4); auto (default): learned where its "
                            "weights ship for the scale, else kernelgan")
    group.add_argument("--blind-smoothing", type=smoothing_value, metavar="SIGMA|image",
                       default=BLIND_SMOOTHING,
                       help="learned: local estimates smoothed over SIGMA LR pixels (default "
                            f"{BLIND_SMOOTHING:g}), or 'image' for one estimate per image")
    group.add_argument("--blind-kernel", choices=("full", "isotropic"), default=BLIND_KERNEL,
                       help="what UDVD is told: the kernel as read (full) or the nearest "
                            "isotropic Gaussian, the only kind UDVD's shipped weights learnt "
                            f"(default {BLIND_KERNEL})")
    group.add_argument("--blind-correction", type=int, metavar="N",
                       help="learned, isotropic: N rounds in which UDVD's output, degraded "
                            "again as UDVD was told, shows the estimator its own bias on this "
                            "image (default: one at x2 and x3, none at x4, as chosen on "
                            "validation; 0: none; each round is one more UDVD pass)")
    group.add_argument("--estimator-weights", type=Path, metavar="FILE",
                       help="learned: estimator weights instead of the shipped ones")
    if pictures_flag:
        group.add_argument("--save-degradation", type=Path, metavar="DIR",
                           help="write what was estimated, per image: NAME_kernel.png "
                                "(enlarged), NAME_noise.png (sigma map, white = 75) and "
                                "NAME_degradation.json")
    if kernelgan_iterations_flag:
        group.add_argument("--blind-iterations", type=int, default=3000, metavar="N",
                           help="kernelgan: KernelGAN iterations per image (default 3000)")


def smoothing_value(text: str) -> float | None:
    """``--blind-smoothing``: a number of LR pixels, or ``image`` (one estimate per image)."""
    if text == "image":
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or 'image', got {text}")
    return value


def check_blind_args(args: argparse.Namespace, scale: int) -> None:
    """``ValueError`` naming the flag when the blind options do not fit together."""
    pictures = getattr(args, "save_degradation", None)  # not every command has the flag
    used = [flag for flag, value in (("--estimator-weights", args.estimator_weights),
                                      ("--blind-correction", args.blind_correction),
                                      ("--save-degradation", pictures)) if value is not None]
    if not args.blind and args.blind_method != "auto":
        used.insert(0, "--blind-method")
    if used and not args.blind:
        raise ValueError(f"{used[0]} goes with --blind")
    if not args.blind:
        return
    args.blind_method = resolve_blind_method(args.blind_method, scale)
    if args.blind_method == "kernelgan" and args.estimator_weights is not None:
        raise ValueError("--estimator-weights is for --blind-method learned")
    if args.blind_correction:
        if args.blind_correction < 0:
            raise ValueError(f"--blind-correction must be 0 or more, got "
                             f"{args.blind_correction}")
        if args.blind_method == "kernelgan" or args.blind_kernel != "isotropic":
            raise ValueError("--blind-correction goes with the learned estimator told as "
                             "isotropic kernels (--blind-method learned, --blind-kernel "
                             "isotropic)")


def add_told_degradation_args(group: argparse._ArgumentGroup) -> None:
    """``--blur`` / ``--kernel`` / ``--noise``: the degradation non-blind models (udvd) are
    told, for commands that upscale given LR images (upscale, compare)."""
    blur = group.add_mutually_exclusive_group()
    blur.add_argument("--blur", metavar="WIDTH|FILE",
                      help="isotropic Gaussian blur width (sigma, HR pixels) of the input, or "
                           "a per-pixel width map of the input's size: .npy of widths, or an "
                           "image whose pixel values are 10 × the width (2 → 0.2, 30 → 3.0)")
    blur.add_argument("--kernel", type=Path, metavar="FILE",
                      help="blur kernel file (.npy, .npz, .txt, .csv; square, odd size)")
    group.add_argument("--noise", metavar="LEVEL|FILE",
                       help="noise level of the input on the 0..255 scale, or a per-pixel "
                            "level map of the input's size: .npy of levels, or an image whose "
                            "pixel values (0..255) are the levels")


def told_degradation(args: argparse.Namespace) -> tuple:
    """(blur, noise) of ``--blur``/``--kernel`` and ``--noise``: a width, a kernel or a
    per-pixel map (1, 1, h, w), and a level or a map; None where not given."""
    blur = (load_kernel(args.kernel) if args.kernel is not None
            else map_argument(args.blur, "--blur", 10.0))
    return blur, map_argument(args.noise, "--noise", 1.0)


def map_argument(value: str | None, option: str, per_unit: float) -> float | torch.Tensor | None:
    """A number, or a per-pixel map (1, 1, h, w) on the input's grid read by :func:`_read_map`."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return _read_map(Path(value), option, per_unit)
    if not number >= 0:
        raise ValueError(f"{option} must be >= 0, got {value}")
    return number


def _read_map(path: Path, option: str, per_unit: float) -> torch.Tensor:
    """``.npy``: the values themselves; an image file: each pixel value (0..255, colour
    averaged) is ``per_unit`` × the value."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable .npy map ({err})") from err
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{path}: {option} map must be a 2-D numeric array, got "
                             f"{array.dtype} of shape {array.shape}")
        values = torch.from_numpy(array.astype(np.float32))
    else:
        image = read_image(path)  # ImageReadError names the file
        values = image.pixels.mean(dim=0) * 255.0 / per_unit
    if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ValueError(f"{path}: {option} map values must be finite and >= 0")
    return values[None, None]
