"""``dynsr export``: write a model as ONNX with dynamic batch, height and width.

The graph takes ``lr`` (N, 3, H, W) float32 in [0, 1] and returns ``sr`` (N, 3, s·H, s·W);
UDVD also takes ``degradation_map`` (N, 16, H, W) (see ``dynsr.export``). When onnxruntime is
installed (``pip install "dynsr[onnx]"``) the file is checked against PyTorch on two crops of
a real photo at different sizes (max abs difference ≤ 1e-4) before it is written.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from dynsr.models import available


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (dynamic size)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=[spec.name for spec in available()],
                   help="registered model name (see `dynsr models`)")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                   help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--weights", type=Path, default=None, metavar="FILE",
                   help="safetensors weights (default: the shipped ones, if any)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the onnxruntime check against PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `dynsr --help` should not pay for torch.onnx.
    from dynsr.export import DEFAULT_OPSET, onnx_available, to_onnx

    if args.output.exists() and not args.overwrite:
        raise ValueError(f"{args.output} exists (use --overwrite)")
    verify = False if args.no_verify else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        result = to_onnx(args.name, args.scale, args.output, opset=args.opset or DEFAULT_OPSET,
                         weights=args.weights, verify=verify)
    for warning in caught:  # e.g. no trained weights: one line, no source location
        print(f"dynsr export: warning: {warning.message}", file=sys.stderr)
    inputs = ", ".join(result.input_names)
    print(f"wrote {result.path} ({args.name} x{args.scale}, opset {result.opset}, "
          f"inputs: {inputs}; dynamic batch, height, width)")
    if result.max_abs_diff:
        checks = ", ".join(f"{h}×{w}: {d:.2g}" for (h, w), d in result.max_abs_diff.items())
        print(f"onnxruntime matches PyTorch (max abs difference per LR size: {checks})")
    elif not args.no_verify and not onnx_available():
        print("not verified: onnxruntime is not installed (pip install \"dynsr[onnx]\")")
    return 0
