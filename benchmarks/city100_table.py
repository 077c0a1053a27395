"""DDet's Table II on real camera pairs (City100), beside the LR itself and the x3 models.

Two sets, PSNR-Y / SSIM-Y with 8 px left out (docs/real_pairs.md): the 10 iPhone X
validation pairs (which chose the checkpoints of the trained rows) and the 100 Nikon D5500
pairs, the held-out camera. Rows:

* the LR as it is: ``dynsr score LR HR --crop 8``;
* x3 models given the LR bicubic-downscaled by 3 (840×600 → 280×200, 1218×870 → 406×290),
  which they upscale back: ``dynsr eval --model M --downscale-lr 3``, M = bicubic, dyconvsr,
  ddet-rgb (shipped weights, trained on synthetic pairs);
* the models trained on the iPhone X pairs (``benchmarks/city100_runs.py``), the pair's LR as
  it is: ``dynsr eval --model M`` with the shipped weights, or else the run's
  ``training/RUN/best.safetensors`` once the run has completed; not yet trained rows say so.

Each result is a JSON in OUT/ (run once: an existing JSON is read, not run again, so a final
model meets the held-out camera once). Prints a Markdown table with the paper's Table II
(RealSR x2 PSNR) beside it. One thread: OMP_NUM_THREADS=1 unless set.

    python benchmarks/city100_table.py [--data ../data/City100] [--out results/city100]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cached_eval import cached_eval, run_dynsr

ROOT = Path(__file__).resolve().parent.parent
SETS = {"iphone-val": "iphone/val", "nikon": "nikon"}  # name → folder holding HR/ and LR/
CROP = "8"
X3 = [("bicubic x3 (LR ↓3 ↑3)", "bicubic"), ("dyconvsr x3", "dyconvsr"),
      ("ddet-rgb x3", "ddet-rgb")]
TRAINED = [  # (row, model, run, the paper's Table II PSNR on RealSR x2)
    ("Plain (KPN, K=7): kpn7-real", "kpn7-real", "kpn7_real_cpu", 33.43),
    ("w/ PR: kpn7-pr-real", "kpn7-pr-real", "kpn7-pr_real_cpu", 33.80),
    ("w/ CDM: kpn7-pr-cdm-real", "kpn7-pr-cdm-real", "kpn7-pr-cdm_real_cpu", 34.28),
    ("w/ MDA (DDet): ddet-real", "ddet-real", "ddet_real_cpu", 34.37),
    ("ddet-rgb-real (fine-tuned)", "ddet-rgb-real", "ddet-rgb_real_cpu", None),
]


def lr_as_it_is(out: Path, pairs: Path) -> dict:
    path = out / "lr_as_it_is.json"
    if not path.exists():
        run_dynsr(["score", str(pairs / "LR"), str(pairs / "HR"), "--crop", CROP, "--json",
                   str(path)])
    return json.loads(path.read_text())


def trained_weights(model: str, run: str) -> list[str] | None:
    """``--weights`` for a trained row: [] for shipped weights, the run's best weights once
    it completed, None when neither exists."""
    from dynsr.upscale.manifest import find_weights

    if find_weights(model, 1) is not None:
        return []
    summary = ROOT / "training" / run / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("completed"):
        return ["--weights", str(summary.parent / "best.safetensors")]
    return None


def cell(result: dict | None) -> str:
    return "not trained yet" if result is None else \
        f"{result['psnr_y']:.2f} / {result['ssim_y']:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "data" / "City100",
                        help="the folder benchmarks/prepare_city100.py made")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "city100")
    parser.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    columns: dict[str, dict[str, dict | None]] = {}
    for name in args.sets:
        pairs, out = args.data / SETS[name], args.out / name
        out.mkdir(parents=True, exist_ok=True)
        common = ["--hr", str(pairs / "HR"), "--lr", str(pairs / "LR"), "--crop", CROP]
        rows: dict[str, dict | None] = {"LR as it is": lr_as_it_is(out, pairs)}
        for row, model in X3:
            rows[row] = cached_eval(out / f"x3_{model}.json",
                                    ["--model", model, "--downscale-lr", "3", *common])
        for row, model, run, _ in TRAINED:
            weights = trained_weights(model, run)
            rows[row] = None if weights is None else cached_eval(
                out / f"{model}.json", ["--model", model, *weights, *common])
        columns[name] = rows

    header = " | ".join(f"{name} PSNR-Y / SSIM-Y" for name in columns)
    lines = [f"| row | {header} | paper (RealSR x2) |", "|---" * (len(columns) + 2) + "|"]
    paper = {row: value for row, _, _, value in TRAINED}
    for row in next(iter(columns.values())):
        cells = " | ".join(cell(rows[row]) for rows in columns.values())
        value = paper.get(row)
        lines.append(f"| {row} | {cells} | {'' if value is None else f'{value:.2f}'} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
