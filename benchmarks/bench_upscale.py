"""Peak memory and time of ``dynsr upscale`` on a 24-megapixel photo, per model.

The photo: skimage's coffee (600 x 400) resized to 6000 x 4000 with Pillow's bicubic filter
and saved as JPEG (quality 95), made once in the output folder. Each case runs ``dynsr
upscale`` (default precision, default tile 384) in its own process; the figures are that
process's peak resident memory (``ru_maxrss`` of the child) and its wall time, which includes
reading, the model, and encoding the result (JPEG, as the input).

Two ways per model, measured in the same run:

* ``float``: the straightforward way, the whole result kept as float32 in [0, 1] until it is
  written (the Python API's ``Upscaler.upscale_planes``, then ``write_image``);
* ``samples``: what ``dynsr upscale`` does: tiles blended in float32 one tile row at a time,
  finished rows stored at once as 8-bit samples (``upscale_tiled(out_dtype=torch.uint8)``).

    python benchmarks/bench_upscale.py [--models bicubic dyconvsr] [--scale 2] [--out DIR]

Models without shipped weights run with random weights (same speed and memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import skimage.data
from PIL import Image

SIZE = (6000, 4000)

# One case in a fresh interpreter, so that its peak memory is its own.
_CHILD = r"""
import sys, warnings
from pathlib import Path
import dynsr
from dynsr.io import read_image, write_image
warnings.simplefilter("ignore")
way, name, scale, source, target = sys.argv[1:6]
upscaler = dynsr.load(name, int(scale))
image = read_image(source)
if way == "samples":
    upscaler.upscale_loaded(image).save(target)
else:
    colour, _ = upscaler.upscale_planes(image.pixels, None)
    write_image(target, colour, exif=image.exif, icc_profile=image.icc_profile)
"""


def make_photo(folder: Path) -> Path:
    path = folder / "coffee_24mp.jpg"
    if not path.exists():
        Image.fromarray(skimage.data.coffee()).resize(SIZE, Image.BICUBIC).save(path, quality=95)
    return path


def run_case(way: str, name: str, scale: int, photo: Path, folder: Path) -> dict:
    target = folder / f"{name}_x{scale}_{way}.jpg"
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, way, name, str(scale), str(photo),
                              str(target)])
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not all children's
    seconds = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{way} {name} x{scale} failed (status {status})")
    target.unlink()
    return {"way": way, "model": name, "scale": scale, "seconds": round(seconds, 1),
            "peak_gb": round(usage.ru_maxrss / 1024**2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dyconvsr"])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", type=Path, help="folder for the photo and a JSON of results")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="dynsr_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    photo = make_photo(folder)
    print(f"photo {photo} ({SIZE[0]}x{SIZE[1]}), x{args.scale}, one process per case")
    results = []
    for name in args.models:
        rows = [run_case(way, name, args.scale, photo, folder) for way in ("samples", "float")]
        samples, plain = rows
        print(f"{name:<12} float {plain['peak_gb']:.2f} GB {plain['seconds']:7.1f} s   "
              f"samples {samples['peak_gb']:.2f} GB {samples['seconds']:7.1f} s   "
              f"memory ratio {plain['peak_gb'] / samples['peak_gb']:.2f}x")
        results += rows
    if args.out:
        (folder / "bench_upscale.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
