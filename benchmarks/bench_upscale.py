"""Peak memory and time of ``dynsr upscale`` on a 24-megapixel photo, per model.

The photo: skimage's coffee (600 x 400) resized to 6000 x 4000 (``--size``) with Pillow's
bicubic filter and saved as JPEG (quality 95), made once in the output folder. Each case
runs ``dynsr upscale``'s code path (default precision, default tile 384) in its own
process; the figures are that process's peak resident memory (``ru_maxrss`` of the child)
and the seconds from reading the photo to the written result (JPEG, as the input), which
leave out starting Python and loading the model.

Two ways per model, measured in the same run:

* ``float``: the straightforward way, the whole result kept as float32 in [0, 1] until it is
  written (the Python API's ``Upscaler.upscale_planes``, then ``write_image``);
* ``samples``: what ``dynsr upscale`` does: tiles blended in float32 one tile row at a time,
  finished rows stored at once as 8-bit samples (``upscale_tiled(out_dtype=torch.uint8)``).

    python benchmarks/bench_upscale.py [--models bicubic dyconvsr] [--scale 2] [--out DIR]
    python benchmarks/bench_upscale.py --size 1280x720 --ways samples --models all   # speed

Each child sets glibc's malloc as every ``dynsr`` command does (``--malloc default``: not).

Printed: peak GB, seconds, and input megapixels per second (``MP/s``).

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

from dynsr.hardware import timing_context

SIZE = (6000, 4000)
WAYS = ("samples", "float")

# One case in a fresh interpreter, so that its peak memory is its own.
_CHILD = r"""
import sys, time, warnings
from pathlib import Path
import dynsr
from dynsr.malloc import keep_freed_memory
from dynsr.io import read_image, write_image
warnings.simplefilter("ignore")
way, name, scale, source, target, malloc = sys.argv[1:7]
if malloc == "cli":
    keep_freed_memory()
upscaler = dynsr.load(name, int(scale))
start = time.perf_counter()
image = read_image(source)
if way == "samples":
    upscaler.upscale_loaded(image).save(target)
else:
    colour, _ = upscaler.upscale_planes(image.pixels, None)
    write_image(target, colour, exif=image.exif, icc_profile=image.icc_profile)
print(time.perf_counter() - start)
"""


def make_photo(folder: Path, size: tuple[int, int]) -> Path:
    path = folder / f"coffee_{size[0]}x{size[1]}.jpg"
    if not path.exists():
        Image.fromarray(skimage.data.coffee()).resize(size, Image.BICUBIC).save(path, quality=95)
    return path


def run_case(way: str, name: str, scale: int, photo: Path, folder: Path,
             malloc: str = "cli") -> dict:
    target = folder / f"{name}_x{scale}_{way}.jpg"
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", _CHILD, way, name, str(scale), str(photo),
                              str(target), malloc], stdout=subprocess.PIPE, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not all children's
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{way} {name} x{scale} failed (status {status})")
    target.unlink()
    # seconds: read, upscale, write (no interpreter start or model loading); wall: all.
    return {"way": way, "model": name, "scale": scale, "malloc": malloc,
            "seconds": round(float(output), 2), "wall_s": round(wall, 1),
            "peak_gb": round(usage.ru_maxrss / 1024**2, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dyconvsr"],
                        help="model names, or 'all' for every registered model")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}", help="photo size WxH")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    parser.add_argument("--out", type=Path, help="folder for the photo and a JSON of results")
    parser.add_argument("--malloc", choices=("cli", "default"), default="cli",
                        help="cli: glibc malloc set as every dynsr command sets it "
                             "(dynsr.malloc.keep_freed_memory); default: as Python starts")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    models = args.models
    if models == ["all"]:
        from dynsr.models import available
        models = [spec.name for spec in available() if args.scale in spec.scales]
    folder = args.out or Path(tempfile.mkdtemp(prefix="dynsr_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    photo = make_photo(folder, size)
    megapixels = size[0] * size[1] / 1e6
    print(json.dumps(timing_context()))
    print(f"photo {photo} ({size[0]}x{size[1]}), x{args.scale}, one process per case")
    results = []
    for name in models:
        rows = {way: run_case(way, name, args.scale, photo, folder, args.malloc)
                for way in args.ways}
        for row in rows.values():
            row["input_mp_per_s"] = round(megapixels / row["seconds"], 3)
        line = "   ".join(f"{way} {r['peak_gb']:.2f} GB {r['seconds']:7.2f} s "
                           f"{r['input_mp_per_s']:6.3f} MP/s" for way, r in rows.items())
        if len(rows) == 2:
            line += f"   memory ratio {rows['float']['peak_gb'] / rows['samples']['peak_gb']:.2f}x"
        print(f"{name:<12} {line}")
        results += rows.values()
    if args.out:
        suffix = "" if args.malloc == "cli" else "_default_malloc"
        (folder / f"bench_upscale_{size[0]}x{size[1]}_x{args.scale}{suffix}.json").write_text(
            json.dumps({"machine": timing_context(), "cases": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
