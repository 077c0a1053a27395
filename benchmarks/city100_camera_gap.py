"""Why a model trained on iPhone X pairs gains nothing on the Nikon D5500: the blur gap of each
camera's pairs, and how much of it the models close.

For each pair (Y channel, 0..255, float64, 8 px left out at the borders) the script fits the
isotropic Gaussian that best turns the HR into the LR: for each width s of ``WIDTHS``, the HR
blurred by s, then the least-squares gain and offset (a·blur(HR) + b, so that an exposure or
tone difference between the two shots is not read as blur), and keeps the s with the lowest
error. ``s`` says how soft the LR is against its HR; the fitted PSNR says how much of the LR a
plain blur explains (the rest: registration, noise, tone curves, optics that a Gaussian does not
model). The same fit on a model's output says how soft its output still is (s = 0: as sharp
as the HR or sharper).

It also reports the LR's noise level (dynsr's patch-PCA estimator on Y) and, per pair, the
integer shift (within ±2 px) at which the fitted blur matches best: a registration check.

Models: the shipped (or the runs' best) ``ddet-real`` and ``kpn7-real``, final models, not
chosen on the Nikon; this reads their outputs, it tunes nothing.

With ``--tone-only`` it measures instead (in seconds, and adds to the JSON) how much a
correction of the tone alone recovers: the LR's Y mapped by the least-squares gain and offset
against its HR's Y, rounded to 8 bit, scored as PSNR-Y (crop 8) beside the LR as it is.

    python benchmarks/city100_camera_gap.py [--data ../data/City100]
        [--json results/city100/camera_gap.json] [--tone-only]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

from dynsr import load
from dynsr.degrade import gaussian_blur
from dynsr.degrade.noise_level import estimate_noise_level
from dynsr.io import atomic_write_json, list_images, load_tensor
from dynsr.metrics.quality import psnr, to_y
from dynsr.ops.color import rgb_to_ycbcr
from dynsr.upscale.weights import find_weights

ROOT = Path(__file__).resolve().parent.parent
RUNS = {"ddet-real": "ddet_real_cpu", "kpn7-real": "kpn7_real_cpu"}
WIDTHS = [0.0] + [round(0.25 * i, 2) for i in range(1, 17)]  # 0 .. 4 px
CROP = 8
SHIFT = 2


def luma(image: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) float64 Y in 0..255 of a (3, H, W) image in [0, 1]."""
    return rgb_to_ycbcr(image[None].double())[:, :1]


def blur_fit(source: torch.Tensor, target: torch.Tensor, shift: tuple[int, int] = (0, 0)
             ) -> dict:
    """The Gaussian width s (and gain, offset) for which a·blur(source, s) + b is closest to
    ``target``, both (1, 1, H, W) Y; ``shift`` moves the source by (dy, dx) pixels first."""
    inner = CROP + SHIFT
    best = None
    for width in WIDTHS:
        blurred = source if width == 0 else gaussian_blur(
            source, width, size=2 * math.ceil(3 * width) + 1)
        dy, dx = shift
        moved = torch.roll(blurred, (dy, dx), dims=(-2, -1))[..., inner:-inner, inner:-inner]
        want = target[..., inner:-inner, inner:-inner]
        x, y = moved.flatten(), want.flatten()
        design = torch.stack([x, torch.ones_like(x)], dim=1)
        gain, offset = torch.linalg.lstsq(design, y[:, None]).solution[:, 0].tolist()
        mse = float(((gain * x + offset - y) ** 2).mean())
        if best is None or mse < best["mse"]:
            best = {"width": width, "gain": gain, "offset": offset, "mse": mse}
    best["psnr"] = 10 * math.log10(255 ** 2 / best["mse"])
    return best


def registration(source: torch.Tensor, target: torch.Tensor, width: float) -> tuple[int, int]:
    """The integer (dy, dx) within ±SHIFT at which the blurred source fits best."""
    blurred = source if width == 0 else gaussian_blur(
        source, width, size=2 * math.ceil(3 * width) + 1)
    inner = CROP + SHIFT
    want = target[..., inner:-inner, inner:-inner]
    errors = {}
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            moved = torch.roll(blurred, (dy, dx), dims=(-2, -1))[..., inner:-inner,
                                                                  inner:-inner]
            x, y = moved.flatten(), want.flatten()
            design = torch.stack([x, torch.ones_like(x)], dim=1)
            solution = torch.linalg.lstsq(design, y[:, None]).solution
            errors[(dy, dx)] = float(((design @ solution)[:, 0] - y).pow(2).mean())
    return min(errors, key=errors.get)


def tone_only(folder: Path) -> dict:
    """Mean PSNR-Y (crop 8) of the LRs as they are and after a least-squares gain and offset
    of their Y against the HR's Y (the best a global tone correction can do)."""
    as_is, corrected = [], []
    for hr_path in list_images([folder / "HR"]):
        hr = to_y(load_tensor(hr_path).float())[CROP:-CROP, CROP:-CROP]
        lr = to_y(load_tensor(folder / "LR" / hr_path.name).float())[CROP:-CROP, CROP:-CROP]
        x, y = lr.flatten(), hr.flatten()
        design = torch.stack([x, torch.ones_like(x)], dim=1)
        gain, offset = torch.linalg.lstsq(design, y[:, None]).solution[:, 0].tolist()
        as_is.append(psnr(lr, hr))
        corrected.append(psnr((gain * lr + offset).round().clamp(0, 255), hr))
    return {"lr_psnr_y": statistics.mean(as_is), "tone_corrected_psnr_y":
            statistics.mean(corrected), "pairs": len(as_is)}


def upscaler(name: str):
    weights = None if find_weights(name, 1) is not None else \
        ROOT / "training" / RUNS[name] / "best.safetensors"
    return load(name, 1, precision="fp32", weights=weights)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "data" / "City100")
    parser.add_argument("--json", type=Path, default=ROOT / "results" / "city100" /
                        "camera_gap.json")
    parser.add_argument("--tone-only", action="store_true",
                        help="only measure the tone-corrected LR (adds 'tone_only' to the JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tone_only:
        result = json.loads(args.json.read_text()) if args.json.exists() else {}
        result["tone_only"] = {name: tone_only(folder) for name, folder in (
            ("iphone-val", args.data / "iphone" / "val"), ("nikon", args.data / "nikon"))}
        print(json.dumps(result["tone_only"], indent=1))
        atomic_write_json(args.json, result)
        return 0
    models = {name: upscaler(name) for name in RUNS}
    sets = {"iphone-val": args.data / "iphone" / "val", "nikon": args.data / "nikon"}
    result: dict = {"widths": WIDTHS, "crop": CROP, "sets": {}}
    for set_name, folder in sets.items():
        records = []
        for hr_path in list_images([folder / "HR"]):
            lr_img = load_tensor(folder / "LR" / hr_path.name).float()
            hr = luma(load_tensor(hr_path).float())
            lr = luma(lr_img)
            fit = blur_fit(hr, lr)
            record = {"name": hr_path.stem, "lr_width": fit["width"],
                      "lr_gain": fit["gain"], "lr_offset": fit["offset"],
                      "lr_fit_psnr": fit["psnr"],
                      "lr_noise": estimate_noise_level(lr[0] / 255.0),
                      "shift": list(registration(hr, lr, fit["width"]))}
            for name, model in models.items():
                out = luma(model.upscale(lr_img).float().clamp(0, 1))
                record[f"{name}_width"] = blur_fit(hr, out)["width"]
            records.append(record)
            print(set_name, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                        for k, v in record.items()}), flush=True)
        summary = {key: statistics.mean(r[key] for r in records)
                   for key in records[0] if key not in ("name", "shift")}
        summary["median_lr_width"] = statistics.median(r["lr_width"] for r in records)
        summary["shifted"] = sum(r["shift"] != [0, 0] for r in records)
        summary["pairs"] = len(records)
        result["sets"][set_name] = {"mean": summary, "images": records}
        print(set_name, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                    for k, v in summary.items()}), flush=True)
    atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
