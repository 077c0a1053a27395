"""``python -m dynsr.upscale FILE...``: add weights written by ``dynsr train`` to the shipped set.

See :func:`dynsr.upscale.weights.publish_weights`.
"""

from __future__ import annotations

import argparse
import sys

from dynsr.upscale.weights import WeightsError, publish_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dynsr.upscale",
        description="Add weights written by dynsr train to a weights folder's manifest.")
    parser.add_argument("files", nargs="+", help="safetensors files written by dynsr train")
    parser.add_argument("--weights-dir", help="target folder [the package's dynsr/weights]")
    args = parser.parse_args(argv)
    for path in args.files:
        try:
            entry = publish_weights(path, args.weights_dir)
        except (OSError, WeightsError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"{entry.name} x{entry.scale}: {entry.path} sha256 {entry.sha256}")
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
