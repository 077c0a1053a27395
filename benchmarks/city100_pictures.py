"""Pictures for docs/real_pairs.md: real-pair models beside the LR and the HR.

* ``city100_nikon_crops.png``: crops of Nikon D5500 pairs (the held-out camera), left to right
  the LR as it is, ``kpn7-real``, ``ddet-real`` and the HR; one row per pair. The crops are
  fixed before looking at any result: the middle of the frame, 160×160 HR pixels, shown 2×.
* ``ddet_real_photos.png``: two photos that ship with dynsr (``dynsr/examples``), each a
  crop of: bicubic ×3, ``ddet-rgb`` ×3 (synthetic-trained), ``ddet-real`` ×3 (bicubic ×3
  first, then restored), 2× nearest.

Weights: shipped, or the runs' ``training/RUN/best.safetensors``. One thread.

    python benchmarks/city100_pictures.py [--data ../data/City100] [--pairs 007 050]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from dynsr import load
from dynsr.io import load_tensor, write_image
from dynsr.upscale.weights import find_weights

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"ddet-real": "ddet_real_cpu", "kpn7-real": "kpn7_real_cpu"}
CROP = 160
PHOTO_CROPS = {"astronaut": (100, 40, 80), "coffee": (170, 150, 80)}  # LR x, y, side


def upscaler(name: str, scale: int):
    weights = None if find_weights(name, scale) is not None else \
        ROOT / "training" / RUNS[name] / "best.safetensors"
    return load(name, scale, precision="fp32", weights=weights)


def strip(tiles: list[torch.Tensor], zoom: int = 2) -> torch.Tensor:
    gap = torch.ones(3, tiles[0].shape[-2], 6)
    row = torch.cat([t for tile in tiles for t in (tile.clamp(0, 1), gap)][:-1], dim=-1)
    return F.interpolate(row[None], scale_factor=zoom, mode="nearest")[0]


def rows_to_picture(rows: list[torch.Tensor]) -> torch.Tensor:
    gap = torch.ones(3, 6, rows[0].shape[-1])
    return torch.cat([t for row in rows for t in (row, gap)][:-1], dim=-2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "data" / "City100")
    parser.add_argument("--pairs", nargs="+", default=["007", "050"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kpn, ddet = upscaler("kpn7-real", 1), upscaler("ddet-real", 1)
    rows = []
    for stem in args.pairs:
        lr = load_tensor(args.data / "nikon" / "LR" / f"{stem}.png").float()
        hr = load_tensor(args.data / "nikon" / "HR" / f"{stem}.png").float()
        top, left = (hr.shape[-2] - CROP) // 2, (hr.shape[-1] - CROP) // 2
        window = (slice(None), slice(top, top + CROP), slice(left, left + CROP))
        # The models see a margin around the crop, as they would in the whole image.
        margin = (slice(None), slice(top - 32, top + CROP + 32),
                  slice(left - 32, left + CROP + 32))
        inner = (slice(None), slice(32, 32 + CROP), slice(32, 32 + CROP))
        outs = [model.upscale(lr[margin])[inner] for model in (kpn, ddet)]
        rows.append(strip([lr[window], *outs, hr[window]]))
    write_image(args.out / "city100_nikon_crops.png", rows_to_picture(rows))

    models = [("bicubic", load("bicubic", 3)), ("ddet-rgb", load("ddet-rgb", 3,
                                                                   precision="fp32")),
              ("ddet-real", upscaler("ddet-real", 3))]
    rows = []
    for name, (x, y, side) in PHOTO_CROPS.items():
        photo = load_tensor(ROOT / "dynsr" / "examples" / f"{name}.png").float()
        part = photo[:, y - 16:y + side + 16, x - 16:x + side + 16]
        tiles = [model.upscale(part)[:, 48:48 + 3 * side, 48:48 + 3 * side]
                 for _, model in models]
        rows.append(strip(tiles))
    write_image(args.out / "ddet_real_photos.png", rows_to_picture(rows))
    print(f"wrote {args.out / 'city100_nikon_crops.png'} and {args.out / 'ddet_real_photos.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
