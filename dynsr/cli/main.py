"""The ``dynsr`` command: one sub-command per job, each in its own module.

Only the module of the command given is imported (``dynsr --help`` imports them all), so a
command starts without loading what it does not use: ``dynsr models`` needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from dynsr import __version__
from dynsr.malloc import keep_freed_memory

# Command name -> its module in dynsr.cli (each has add_parser(sub), which sets run=).
COMMANDS = {
    "eval": "eval_cmd",
    "degrade": "degrade_cmd",
    "models": "models_cmd",
    "train": "train_cmd",
    "upscale": "upscale_cmd",
    "zeroshot": "zeroshot_cmd",
    "estimate-kernel": "estimate_kernel_cmd",
    "export": "export_cmd",
    "compare": "compare_cmd",
    "plot": "plot_cmd",
    "publish-weights": "publish_weights_cmd",
    "score": "score_cmd",
}


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of ``commands`` (default: all of them)."""
    parser = argparse.ArgumentParser(
        prog="dynsr", description="Super-resolution with dynamic kernels (DDet, UDVD, "
        "DualSR, DyConvSR): exact metrics, fast on a CPU.")
    parser.add_argument("--version", action="version", version=f"dynsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands or COMMANDS:
        importlib.import_module(f"dynsr.cli.{COMMANDS[name]}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    named = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser([named] if named in COMMANDS else None)
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
