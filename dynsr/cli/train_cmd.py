"""``dynsr train``: train a model from a YAML configuration (see ``configs/`` for recipes).

Examples::

    dynsr train example_bundled --out runs/example   # a shipped recipe, by name
    dynsr train configs/dyconvsr_x2_cpu.yaml
    dynsr train dyconvsr_x2_cpu train.iterations=2000 train.lr=5e-4 --out runs/try
    dynsr train dyconvsr_x2_cpu --resume          # continue a stopped run
    torchrun --nproc_per_node=2 -m dynsr train dyconvsr_x2_cpu

Overrides are ``dotted.key=value`` with YAML values (``train.milestones=[1000,2000]``,
``train.ema_decay=null``). Relative paths in a configuration file are relative to that file;
in overrides, to the current folder. Results go to ``--out`` (default ``runs/NAME``):
config.yaml, state.pt, log.csv, summary.json, model.safetensors and best.safetensors. The
keys and their defaults: ``dynsr train --print-config CONFIG`` or the docs of
``dynsr.train.config``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynsr.train.config import config_to_yaml, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML configuration",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path,
                   help="YAML configuration, or the name of a shipped recipe (configs/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override configuration keys, e.g. train.lr=2e-4")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output folder (default: runs/NAME, NAME from the configuration)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its state.pt (starts "
                        "afresh if there is none)")
    p.add_argument("--reschedule", action="store_true",
                   help="with --resume: accept a new train.iterations (a longer or shorter "
                        "schedule from the saved iteration on; recorded in summary.json)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved configuration and exit")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_const", const=True,
                     help="show the progress bar even when not on a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                     help="never show the progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(config_to_yaml(cfg))
        return 0
    # Imported here: `dynsr --help` and the other commands need not load the engine.
    from dynsr.train.engine import train

    out = args.out if args.out is not None else Path("runs") / cfg.name
    train(cfg, out, resume=args.resume, reschedule=args.reschedule, progress=args.progress)
    return 0
