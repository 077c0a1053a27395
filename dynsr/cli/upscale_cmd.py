"""``dynsr upscale``: upscale image files and folders with any model.

Each output is written next to its input (or under ``-o DIR``, keeping the folders' structure
with ``--recursive``) as ``NAME{suffix}.{ext}``, atomically: a failed or interrupted image
leaves no partial file. Existing files are never replaced without ``--overwrite``, and an
input is never overwritten. Alpha, grayscale, 16-bit (PNG output), EXIF (orientation applied)
and ICC profiles are kept. Large images go through the model in tiles with blended seams;
the default overlap makes tiles exact for the model. A file that fails is reported on one
line and the others are still processed; the exit code is 1 only if something failed.

The default model is DyConvSR with its shipped weights; learned models without weights run
randomly initialised, with a warning.

Examples:
  dynsr upscale photo.jpg                         photo_x2.png next to it
  dynsr upscale photo.jpg --before-after          and photo_x2_before_after.png
  dynsr upscale photos/ -o big/ --recursive       a folder tree, structure kept
  dynsr upscale scan.png --model udvd --scale 4 --blur 1.2 --noise 5
  dynsr upscale huge.tif --tile 256 --ext same    less memory; same format out
  dynsr upscale photo.jpg --model ddet-real --scale 3
  dynsr upscale photo.jpg --model ddet-real --scale 1     restored at its own size
                                                  real-pair model: bicubic x3, then restored
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from dynsr.api import DEFAULT_MODEL, Upscaler, load
from dynsr.blind import estimate_blind_degradation, kernel_width, save_degradation
from dynsr.cli.options import (
    add_blind_args,
    add_told_degradation_args,
    check_blind_args,
    told_degradation,
)
from dynsr.io import (
    PNG_COMPRESSION,
    SIXTEEN_BIT_SUFFIXES,
    LoadedImage,
    list_images,
    read_image,
    write_image,
)
from dynsr.models.inference import PRECISIONS
from dynsr.upscale.before_after import before_after
from dynsr.upscale.tiling import DEFAULT_TILE, TILE_SIDE, default_tile

EXTENSIONS = ("png", "jpg", "webp", "tif", "avif", "same")
_PROG = "dynsr upscale"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="upscale images (files, folders)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="images or folders")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="output folder (created if missing); default: next to each input")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name (see `dynsr models`; default {DEFAULT_MODEL})")
    p.add_argument("--scale", type=int, default=2, choices=(1, 2, 3, 4),
                   help="upscaling factor (default 2); the -real models (ddet-real) "
                        "bicubic-upscale by it, then restore the result, and at 1 restore "
                        "the photo at its own size")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="safetensors weights to use instead of the shipped ones (e.g. a "
                        "`dynsr train` result: its model configuration comes with it)")
    p.add_argument("--suffix", metavar="SUF",
                   help="added to output names (default _x<scale>; '' for none)")
    p.add_argument("--ext", choices=EXTENSIONS, default="png",
                   help="output format (default png, which keeps 16 bit and alpha; same: "
                        "the input's)")
    p.add_argument("--quality", type=int, default=95, help="jpg/webp quality (default 95)")
    p.add_argument("--png-compression", type=int, default=PNG_COMPRESSION, metavar="0-9",
                   help=f"png zlib level (default {PNG_COMPRESSION}: 2.5x faster than 6, "
                        "files about 12%% larger; 9 smallest, 0 fastest)")
    p.add_argument("--recursive", action="store_true",
                   help="look into sub-folders, keeping their structure in the output")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--before-after", action="store_true",
                   help="also write NAME{suffix}_before_after.png: plain bicubic enlargement "
                        "left, the SR result right")
    p.add_argument("--tile", type=int, metavar="N",
                   help=f"tile side in input pixels (default {DEFAULT_TILE}, "
                        f"{', '.join(f'{k} {v}' for k, v in TILE_SIDE.items())}; smaller uses "
                        "less memory; halved automatically when memory runs out)")
    p.add_argument("--overlap", type=int, metavar="N",
                   help="tile overlap in input pixels (default: the model's, exact tiling)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (default): cuda, else mps, else cpu; or cpu, cuda, cuda:N, mps")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="default: bf16 on CPUs with native bf16 (AVX-512 BF16/AMX) and on "
                        "CUDA GPUs that support it, else fp32; fp16 only on GPUs")
    add_told_degradation_args(p.add_argument_group(
        "degradation (non-blind models: udvd, udvd-lite)"))
    add_blind_args(p.add_argument_group("blind SR with non-blind models (udvd, udvd-lite)"),
                   kernelgan_iterations_flag=True)
    # SUPPRESS: only set when given here, so `dynsr --debug upscale` keeps working.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")
    p.set_defaults(run=run)


def _relative_name(path: Path, roots: list[Path]) -> Path:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root)
    return Path(path.name)


def output_path(path: Path, roots: list[Path], output: Path | None, suffix: str,
                ext: str) -> Path:
    """Where the upscaled ``path`` goes (module doc)."""
    extension = path.suffix if ext == "same" else f".{ext}"
    name = f"{path.stem}{suffix}{extension}"
    if output is None:
        return path.with_name(name)
    return output / _relative_name(path, roots).with_name(name)


def _collect(inputs: list[Path], recursive: bool, report) -> tuple[list[Path], int]:
    """Images of every input; a missing input is one failure, the others still count."""
    paths: list[Path] = []
    failed = 0
    for given in inputs:
        try:
            found = list_images([given], recursive=recursive)
        except OSError as err:
            failed += 1
            report(f"failed: {err}")
            continue
        if not found and given.is_dir():
            report(f"{given}: no images in this folder"
                   + ("" if recursive else " (use --recursive for sub-folders)"))
        paths.extend(p for p in found if p not in paths)
    return paths, failed


def _check_output_options(args: argparse.Namespace) -> None:
    if args.tile is not None and args.tile < 16:
        raise ValueError(f"--tile must be at least 16, got {args.tile}")
    tile = default_tile(args.model) if args.tile is None else args.tile
    if args.overlap is not None and not 0 <= args.overlap < tile:
        raise ValueError(f"--overlap must be >= 0 and smaller than --tile, got {args.overlap}")
    if args.quality < 1 or args.quality > 100:
        raise ValueError(f"--quality must be 1 to 100, got {args.quality}")
    if not 0 <= args.png_compression <= 9:
        raise ValueError(f"--png-compression must be 0 to 9, got {args.png_compression}")


def _given_conditions(args: argparse.Namespace, upscaler: Upscaler) -> dict:
    """What a non-blind model is told from --blur/--kernel/--noise (checked against the
    model and --blind); nothing for blind models."""
    if args.blind and (not upscaler.needs_degradation or args.noise is not None
                       or args.blur is not None or args.kernel is not None):
        raise ValueError("--blind estimates the degradation for non-blind models (udvd, "
                         "udvd-lite), in place of --blur/--kernel/--noise")
    check_blind_args(args, args.scale)
    if args.blind_iterations < 1:
        raise ValueError(f"--blind-iterations must be positive, got {args.blind_iterations}")
    if upscaler.needs_degradation and not args.blind:
        return upscaler.conditions(*told_degradation(args))
    if not upscaler.needs_degradation and (args.blur is not None or args.kernel is not None
                                           or args.noise is not None):
        raise ValueError(f"--blur/--kernel/--noise describe the input's degradation for "
                         f"non-blind models (udvd, udvd-lite); {args.model} does not use them")
    return {}


def _estimated_conditions(args: argparse.Namespace, upscaler: Upscaler, image: LoadedImage,
                          path: Path, report: Callable[[str], None]) -> dict:
    """--blind: the degradation read off ``image`` (corrected by ``upscaler``), reported (and
    saved if asked)."""
    pixels = image.pixels.to(torch.float32)

    def restore(conditions: dict) -> torch.Tensor:
        return upscaler.upscale_planes(pixels, None, conditions)[0]

    estimate = estimate_blind_degradation(
        image.pixels, args.scale, args.blind_method,
        smoothing=args.blind_smoothing, isotropic=args.blind_kernel == "isotropic",
        estimator_weights=args.estimator_weights, kernelgan_iterations=args.blind_iterations,
        restore=restore, correction=args.blind_correction)
    noise = estimate.noise_map
    spread = (f" ({float(noise.min()):.1f} to {float(noise.max()):.1f})"
              if estimate.varies else "")
    report(f"{path}: {estimate.method} estimate in {estimate.seconds:.1f} s: noise "
           f"sigma {estimate.noise:.1f}{spread}, blur width ~"
           f"{kernel_width(estimate.kernel()):.2f}")
    if args.save_degradation is not None:
        save_degradation(estimate, args.save_degradation, path.stem)
    return estimate.conditions()


def run(args: argparse.Namespace) -> int:
    debug = getattr(args, "debug", False)

    def report(message: str) -> None:
        tqdm.write(f"{_PROG}: {message}", file=sys.stderr)

    _check_output_options(args)
    suffix = f"_x{args.scale}" if args.suffix is None else args.suffix

    upscaler = load(args.model, args.scale, device=args.device, precision=args.precision,
                    weights=args.weights, tile=args.tile, overlap=args.overlap,
                    notify=lambda message: report(f"warning: {message}"))
    conditions = _given_conditions(args, upscaler)
    print(f"{_PROG}: {upscaler.name} x{upscaler.scale} on {upscaler.device} "
          f"({upscaler.precision}), tile {upscaler.tile}, overlap {upscaler.overlap}",
          file=sys.stderr)

    start = time.perf_counter()
    paths, failed = _collect(args.inputs, args.recursive, report)
    done = skipped = 0
    written: dict[Path, Path] = {}
    for path in tqdm(paths, desc=f"upscale x{args.scale}", unit="img", disable=None):
        target = output_path(path, args.inputs, args.output, suffix, args.ext)
        try:
            if target.resolve() == path.resolve():
                raise ValueError(f"{path}: the output would replace the input (give a "
                                 "--suffix, another --ext or -o DIR)")
            if target in written:
                raise ValueError(f"{path}: same output name {target} as {written[target]} "
                                 "(give another --ext or --suffix)")
            if target.exists() and not args.overwrite:
                skipped += 1
                report(f"{target} exists, skipped (use --overwrite)")
                continue
            image = read_image(path)
            if args.blind:
                conditions = _estimated_conditions(args, upscaler, image, path, report)
            result = upscaler.upscale_loaded(image, conditions, progress=True)
            if result.bit_depth == 16 and target.suffix.lower() not in SIXTEEN_BIT_SUFFIXES:
                report(f"{path}: 16-bit image written as 8-bit {target.suffix} (use --ext "
                       "png or tif to keep 16 bits)")
            result.save(target, quality=args.quality, png_compression=args.png_compression)
            written[target] = path
            if args.before_after:
                picture = target.with_name(f"{target.stem}_before_after.png")
                write_image(picture, before_after(image.pixels, result.pixels))
                report(f"{path}: before/after in {picture}")
        except (OSError, ValueError, RuntimeError) as err:
            # One line per failed file; the rest of the batch still runs.
            failed += 1
            if debug:
                traceback.print_exc()
            message = str(err) if str(path) in str(err) else f"{path}: {err}"
            report(f"failed: {' '.join(message.split())}")
            continue
        done += 1
    elapsed = time.perf_counter() - start
    where = f" into {args.output}" if args.output is not None else ""
    print(f"upscaled {done} images{where} ({skipped} skipped, {failed} failed) in "
          f"{elapsed:.1f} s")
    return 1 if failed else 0
