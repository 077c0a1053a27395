"""``dynsr publish-weights``: add weights written by ``dynsr train`` to a weights folder.

Each file (a run's ``best.safetensors`` or ``model.safetensors``) is copied into the folder
as ``NAME_xS.safetensors`` and listed in its ``manifest.json`` with its sha256 and what the
file's metadata says about how it was made (data, iterations, wall time, machines, the
validation score, earlier stages it was fine-tuned from). The default folder is the
package's ``dynsr/weights``: the weights that ship. Maintainers' tool.

Examples:
  dynsr publish-weights training/dyconvsr_x2_cpu_l2/best.safetensors
  dynsr publish-weights training/udvd_x2_c128_cpu/best.safetensors --name udvd-wide
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynsr.upscale.weights import STORAGE_DTYPES, publish_weights


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish-weights", help="add trained weights to the shipped set",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="safetensors files written by dynsr train")
    p.add_argument("--weights-dir", type=Path, metavar="DIR",
                   help="target folder (default: the package's dynsr/weights)")
    p.add_argument("--storage", choices=tuple(STORAGE_DTYPES), default="fp32",
                   help="fp16: store the tensors in float16, half the size (loaded back "
                        "in the model's dtype); default fp32, as trained")
    p.add_argument("--name", metavar="MODEL",
                   help="list the weights under this registered model, which must build the "
                        "same network (e.g. a udvd-lite run with channels 128 as udvd-wide)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        entry = publish_weights(path, args.weights_dir, args.storage, args.name)  # ValueError
        print(f"{entry.name} x{entry.scale}: {entry.path} sha256 {entry.sha256}")
    return 0
