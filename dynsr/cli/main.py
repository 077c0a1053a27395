"""The ``dynsr`` command: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import ctypes
import platform
import sys
import traceback

from dynsr import __version__
from dynsr.cli import (
    compare_cmd,
    degrade_cmd,
    estimate_kernel_cmd,
    eval_cmd,
    export_cmd,
    models_cmd,
    plot_cmd,
    publish_weights_cmd,
    train_cmd,
    upscale_cmd,
    zeroshot_cmd,
)

COMMANDS = (eval_cmd, degrade_cmd, models_cmd, train_cmd, upscale_cmd, zeroshot_cmd,
            estimate_kernel_cmd, export_cmd, compare_cmd, plot_cmd, publish_weights_cmd)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to 32 MB for reuse (True if it could).

    PyTorch's CPU tensors come from malloc, and glibc serves large blocks with fresh mmaps
    that it unmaps when freed (and trims the heap top), so every training step, tile or
    DualSR iteration pays page faults on its large temporaries again. Raising the mmap
    threshold to its maximum and the trim threshold to 1 GB keeps that memory mapped: a DDet
    x2 training step went from 272 to 238 ms on this 2-core CPU (1 thread, quiet machine,
    the same as MALLOC_MMAP_THRESHOLD_=33554432 in the environment). The process keeps its
    peak memory until it ends, which suits a command. Not done on other C libraries.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynsr", description="Super-resolution with dynamic kernels (DDet, UDVD, "
        "DualSR, DyConvSR): exact metrics, fast on a CPU.")
    parser.add_argument("--version", action="version", version=f"dynsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a trailing positional list at the first option, so
    # `dynsr train CONFIG --out DIR key=value` leaves `key=value` over: give it to the list.
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all(
                "=" in e and not e.startswith("-") for e in extra):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    keep_freed_memory()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("dynsr: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError) as err:
        # Known failure kinds (bad files, bad options) are one clear line.
        if args.debug:
            traceback.print_exc()
        print(f"dynsr {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
