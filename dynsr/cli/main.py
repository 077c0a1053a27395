"""The ``dynsr`` command: one sub-command per job, each in its own module."""

from __future__ import annotations

import argparse
import sys
import traceback

from dynsr import __version__
from dynsr.cli import (
    degrade_cmd,
    estimate_kernel_cmd,
    eval_cmd,
    export_cmd,
    models_cmd,
    train_cmd,
    upscale_cmd,
    zeroshot_cmd,
)

COMMANDS = (eval_cmd, degrade_cmd, models_cmd, train_cmd, upscale_cmd, zeroshot_cmd,
            estimate_kernel_cmd, export_cmd)


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
