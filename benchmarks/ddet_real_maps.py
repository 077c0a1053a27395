"""Where DDet's parts act on real pairs: the CDM path and each kernel size, per pixel.

DDet (``ddet-real``) adds to the plain KPN a detail-correcting path (CDM: I_Rev = I_LR +
G_Dil(I_LR), paper Eq. 2) and kernels of three sizes whose outputs are summed (Eq. 9). This
script opens the trained network on the iPhone X validation pairs (never the held-out Nikon)
and measures, per image, on the Y channel (0..255):

* ``cdm_mean_abs``: the mean |I_Rev − I_LR|, what CDM changes; ``cdm_over_1``: the share of
  pixels it changes by more than one grey level; ``cdm_mean``: the signed mean of I_Rev − I_LR
  (a shift of the whole image) and ``cdm_varying``: the mean |I_Rev − I_LR − cdm_mean|, what
  CDM changes beyond that shift;
* per kernel size k: ``dc``, the mean sum of the taps (how much of the pixel the size passes
  through), and ``detail``, the mean |g(I_Rev | K_k) − dc_k(x) · I_Rev(x)|: what the size
  adds beyond scaling the pixel (its sharpening or smoothing); ``dc_total``: the sum of the
  sizes' dc, how much of I_Rev the three sizes pass through together;
* ``out_minus_kpn``: the mean |DDet − KPN| of the two final outputs, beside the PSNR-Y of
  each (crop 8), to see whether the parts change the output where it matters.

It also draws one validation image's maps (CDM, the detail of each size, |DDet − KPN|,
|HR − LR|) as a PNG. Weights: the shipped ``ddet-real`` / ``kpn7-real``, or the runs'
``training/RUN/best.safetensors``.

    python benchmarks/ddet_real_maps.py [--data ../data/City100]
        [--json results/city100/ddet_maps.json]
        [--picture docs/images/city100_ddet_maps.png] [--image 004]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from dynsr.io import atomic_write_json, list_images, load_tensor, write_image
from dynsr.metrics import evaluate_pair
from dynsr.models import create
from dynsr.ops.color import rgb_to_ycbcr
from dynsr.ops.dynamic import dynamic_filter
from dynsr.upscale.weights import find_weights, load_state_dict

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"ddet-real": "ddet_real_cpu", "kpn7-real": "kpn7_real_cpu"}


def load_model(name: str) -> torch.nn.Module:
    """The shipped weights, else the completed run's best weights."""
    entry = find_weights(name, 1)
    if entry is not None:
        model = create(name, 1, **entry.config)
        return load_state_dict(model, entry.path, entry.sha256).eval()
    path = ROOT / "training" / RUNS[name] / "best.safetensors"
    if not path.exists():
        raise SystemExit(f"{name}: no shipped weights and no {path}")
    return load_state_dict(create(name, 1), path).eval()


@torch.no_grad()
def parts(model: torch.nn.Module, luma: torch.Tensor) -> dict[str, torch.Tensor]:
    """DDet's intermediate images for a Y input (1, 1, H, W) in [0, 1] (the network's own
    scale; the model class feeds Y / 255 of YCbCr, i.e. [16/255, 235/255])."""
    core = model.core
    revealed = core.reveal(luma)
    kernels = core.predict_kernels(luma)
    out = {"revealed": revealed}
    for kernel, size in zip(kernels, core.kernel_sizes, strict=True):
        filtered = dynamic_filter(revealed, kernel, size)
        dc = kernel.sum(dim=1, keepdim=True)
        out[f"dc{size}"] = dc
        out[f"detail{size}"] = (filtered - dc * revealed).abs()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "data" / "City100")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "city100" /
                        "ddet_maps.json")
    parser.add_argument("--picture", type=Path, default=ROOT / "docs" / "images" /
                        "city100_ddet_maps.png")
    parser.add_argument("--image", default="004", help="validation image drawn (stem)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ddet, kpn = load_model("ddet-real"), load_model("kpn7-real")
    val = args.data / "iphone" / "val"
    records = []
    for hr_path in list_images([val / "HR"]):
        lr_path = val / "LR" / hr_path.name  # prepare_city100.py names a pair alike
        lr, hr = load_tensor(lr_path)[None].float(), load_tensor(hr_path)[None].float()
        luma = rgb_to_ycbcr(lr)[:, :1] / 255.0
        found = parts(ddet, luma)
        with torch.no_grad():
            sr_ddet, sr_kpn = ddet(lr), kpn(lr)
        change = (found["revealed"] - luma) * 255
        record = {"name": hr_path.stem,
                  "cdm_mean_abs": float(change.abs().mean()),
                  "cdm_mean": float(change.mean()),
                  "cdm_varying": float((change - change.mean()).abs().mean()),
                  "cdm_over_1": float((change.abs() > 1).float().mean()),
                  "out_minus_kpn": float((rgb_to_ycbcr(sr_ddet)[:, :1]
                                          - rgb_to_ycbcr(sr_kpn)[:, :1]).abs().mean()),
                  "psnr_y_ddet": evaluate_pair(sr_ddet[0].double(), hr[0].double(), 8)["psnr_y"],
                  "psnr_y_kpn": evaluate_pair(sr_kpn[0].double(), hr[0].double(), 8)["psnr_y"]}
        for size in ddet.core.kernel_sizes:
            record[f"dc_{size}"] = float(found[f"dc{size}"].mean())
            record[f"detail_{size}"] = float(found[f"detail{size}"].mean() * 255)
        record["dc_total"] = sum(record[f"dc_{size}"] for size in ddet.core.kernel_sizes)
        records.append(record)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in record.items()}), flush=True)
        if hr_path.stem.startswith(args.image):
            # Each map scaled so that its 99th percentile is white, side by side with labels
            # in the docs: CDM, detail of each size, |DDet − KPN|, |HR − LR| (Y).
            maps = [(found["revealed"] - luma).abs()]
            maps += [found[f"detail{s}"] for s in ddet.core.kernel_sizes]
            maps.append((rgb_to_ycbcr(sr_ddet)[:, :1] - rgb_to_ycbcr(sr_kpn)[:, :1]).abs())
            maps.append((rgb_to_ycbcr(hr)[:, :1] - rgb_to_ycbcr(lr)[:, :1]).abs())
            tiles = [m[0] / torch.quantile(m.flatten()[::7], 0.99).clamp_min(1e-6)
                     for m in maps]
            gap = torch.ones(1, tiles[0].shape[-2], 8)
            strip = torch.cat([t for tile in tiles for t in (tile.clamp(0, 1), gap)][:-1], -1)
            # Half size (2x2 means): the docs show the strip at page width anyway, and the
            # full-size PNG is 2.4 MB of noise-like detail maps.
            write_image(args.picture, F.avg_pool2d(strip[None], 2)[0])
    mean = {key: sum(r[key] for r in records) / len(records)
            for key in records[0] if key != "name"}
    atomic_write_json(args.json, {"images": records, "mean": mean,
                                  "kernel_sizes": list(ddet.core.kernel_sizes),
                                  "set": "City100 iPhone X validation (10 pairs)",
                                  "picture": str(args.picture.relative_to(ROOT))
                                  if args.picture.is_relative_to(ROOT) else str(args.picture),
                                  "picture_image": args.image})
    print(json.dumps({k: round(v, 4) for k, v in mean.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
