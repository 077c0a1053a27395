"""DualSR on a DIV2KRK-style Set14: the paper's Table 1 rows and Table 2 ablations, x2;
the blind-SR rows at x4 too (``--scale 4``).

The benchmark set: Set14's HR images, each blurred by its own random DIV2KRK kernel
(``dynsr degrade --random-kernel div2krk --downsample direct --seed 0``: 11x11 anisotropic
Gaussian with multiplicative noise, then every 2nd pixel), written once to OUT/lr with the
true kernels in OUT/lr/kernels. Every row is ``dynsr eval`` on those LR files (PSNR-Y /
SSIM-Y, crop 2), run one image at a time (OUT/ROW/NAME.json) so that a row can be built over
several sessions; OUT/ROW.json is the row (the mean of its images, as ``dynsr eval`` writes
it) once every image is done:

* ``bicubic``: MATLAB bicubic x2 (Table 1, 1st category: no kernel knowledge);
* ``dyconvsr``: a network trained on bicubic downscaling (1st category, shipped weights);
* ``dualsr``: DualSR (2nd category: blind, its own kernel estimate); also its kernel error;
* ``kernelgan-gup``: two steps, KernelGAN's kernel, then DualSR's upsampler with G_DN fixed
  to it (2nd category; like the paper's "KernelGAN + ZSSR (masked interp)": ZSSR's loss is
  DualSR's backward cycle); the kernel error is KernelGAN's;
* ``learned-gup``: the same with the kernel read by dynsr's learned degradation estimator
  and the quick recipe's 2000 upsampler iterations on 48-pixel crops (``dynsr zeroshot
  --learned-kernel``);
* ``dualsr-gt``: DualSR with G_DN fixed to the true kernel (3rd category, "GT kernel +
  DualSR");
* ``no-interp``, ``no-forward-cycle``, ``no-backward-cycle``: Table 2's ablations;
* ``dualsr-reference``: DualSR as the paper runs it, fp32 for the full 3000 iterations
  (G_DN composed, which gives the layer-by-layer network's output and gradients): the
  quality the fast rows are held to;
* ``dualsr-3000``: the paper's 3000 iterations and schedule on the fast path (bf16 autocast,
  channels_last): what bf16 alone costs against the reference, and the PSNR-vs-time curve of
  the paper's schedule at the fast path's speed;
* ``udvd-blind``: UDVD (``udvd-lite``, shipped weights) told KernelGAN's kernel and the
  patch-PCA noise level of each LR image (2nd category: a kernel estimator in front of a
  non-blind network);
* ``udvd-learned``: UDVD told what dynsr's learned degradation estimator reads off each LR
  image, with ``--blind``'s defaults (local estimates smoothed over 8 LR pixels, the nearest
  isotropic kernel, the correction rounds of ``dynsr.blind.default_correction``: one at
  x2, none at x4); ``-cN``: N rounds of correction
  (``-c0``: none, the default before the correction); ``-image``: one estimate per image
  (no correction in these variants: they were run before it); ``-local16``: smoothing 16;
  ``-full``: the kernel as read; ``-iso``: its nearest isotropic kernel. The variants were
  compared on the DIV2KRK-style Set5 (validation) to choose the defaults;
* ``udvd-gt``: UDVD told each image's true kernel (3rd category; made on the fly with the
  same flags, which give the same LR images).

Per-image training rows run the fast path by default: ``--iterations 1000`` with the
learning-rate steps scaled to every 250 iterations, bf16 autocast and channels_last (see the
docs/zeroshot.md's DualSR speed table). DualSR rows also score every image every 250 iterations
(``dynsr eval --curve-every``); OUT/ROW.json's ``curve`` is the mean PSNR-vs-time curve, to
be set against the reference's (how much the fast row's 1000 iterations lose to its 3000).

    python benchmarks/dualsr_table.py --data ../shared/data/test/Set14/HR --out results/dualsr
        [--rows bicubic dualsr ...] [--iterations 1000] [--precision bf16]
    python benchmarks/dualsr_table.py --scale 4 --data ../shared/data/test/Set14/HR
        --out results/blind/div2krk_x4 --rows bicubic udvd-learned udvd-gt ...

At x4 (DIV2KRK's x4 kernels: the 11x11 kernel applied twice, 31x31; every 4th pixel) the
rows are those that do not train DualSR (DualSR's x4 is two x2 stages, hours per image on
this CPU), and no paper figures are printed (the paper's are x2); crop 4.

It prints the rows as a Markdown table beside the paper's DIV2KRK figures (Tables 1 and 2;
another image set, so compare gains over bicubic); a row still being built shows the mean
of its images so far, with bicubic's and DualSR's means on the same images.

The threads PyTorch uses come from the environment (``OMP_NUM_THREADS``); ``dynsr eval``
records them with each image's seconds. A finished image is not run again (delete its JSON
to re-run). Several copies may run at once (one per free CPU slot) and share the
rows: each claims an image (OUT/ROW/NAME.running, with its process id) before running it.
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

from dynsr.io import atomic_write_json, list_images

ROWS = {
    "bicubic": ["--model", "bicubic"],
    "dyconvsr": ["--model", "dyconvsr"],
    "dualsr": ["--model", "dualsr"],
    "kernelgan-gup": ["--model", "dualsr", "--kernelgan-kernel"],
    "learned-gup": ["--model", "dualsr", "--learned-kernel", "--iterations", "2000"],
    "dualsr-gt": ["--model", "dualsr", "--known-kernel"],
    "no-interp": ["--model", "dualsr", "--ablation", "no-interp"],
    "no-forward-cycle": ["--model", "dualsr", "--ablation", "no-forward-cycle"],
    "no-backward-cycle": ["--model", "dualsr", "--ablation", "no-backward-cycle"],
    "dualsr-reference": ["--model", "dualsr", "--iterations", "3000", "--precision", "fp32"],
    "dualsr-3000": ["--model", "dualsr", "--iterations", "3000"],
    "udvd-blind": ["--model", "udvd-lite", "--blind", "--blind-method", "kernelgan",
                   "--blind-kernel", "full"],
    "udvd-learned": ["--model", "udvd-lite", "--blind"],
    "udvd-learned-c0": ["--model", "udvd-lite", "--blind", "--blind-correction", "0"],
    "udvd-learned-c1": ["--model", "udvd-lite", "--blind", "--blind-correction", "1"],
    "udvd-learned-c2": ["--model", "udvd-lite", "--blind", "--blind-correction", "2"],
    "udvd-learned-c3": ["--model", "udvd-lite", "--blind", "--blind-correction", "3"],
    "udvd-learned-image-full": ["--model", "udvd-lite", "--blind", "--blind-smoothing", "image",
                                "--blind-kernel", "full"],
    "udvd-learned-image-iso": ["--model", "udvd-lite", "--blind", "--blind-smoothing", "image"],
    "udvd-learned-local16-full": ["--model", "udvd-lite", "--blind", "--blind-smoothing", "16",
                                  "--blind-kernel", "full"],
    "udvd-learned-local16-iso": ["--model", "udvd-lite", "--blind", "--blind-smoothing", "16"],
    "udvd-gt": ["--model", "udvd-lite"],
}
# Rows that need no DualSR training: the ones run at x4.
X4_ROWS = ("bicubic", "dyconvsr", "udvd-blind", "udvd-learned", "udvd-learned-c0",
           "udvd-learned-c1", "udvd-learned-c2", "udvd-gt")
# The paper's figures on DIV2KRK, x2 (PSNR-Y, SSIM-Y): Table 1 rows and Table 2 ablations,
# beside the row that plays their part here ("KernelGAN + ZSSR (masked interp)" for
# kernelgan-gup). Another image set: their gains over bicubic compare, not their values.
PAPER = {
    "bicubic": (28.73, 0.8040),
    "dualsr": (30.92, 0.8728),
    "kernelgan-gup": (30.40, 0.8595),
    "dualsr-gt": (32.72, 0.9030),
    "no-interp": (30.15, 0.8658),
    "no-forward-cycle": (30.33, 0.8505),
    "no-backward-cycle": (30.16, 0.8495),
    "dualsr-reference": (30.92, 0.8728),
    "dualsr-3000": (30.92, 0.8728),
}
DIV2KRK_FLAGS = ["--random-kernel", "div2krk", "--downsample", "direct", "--seed", "0"]
MEANS = ("psnr_y", "ssim_y", "kernel_sse", "kernel_psnr", "seconds")
CURVE_EVERY = 250


def dynsr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "dynsr", *args], check=True)


def run_image(row: str, hr: Path, lr_dir: Path, target: Path, iterations: int,
              precision: str, scale: int) -> None:
    """One ``dynsr eval`` of ``row`` on one image, its JSON written to ``target``."""
    flags = ROWS[row]
    # --iterations is DualSR's; KernelGAN (--blind, --kernelgan-kernel) keeps its own 3000.
    trains = "dualsr" in flags
    options = [*(["--iterations", str(iterations)] if trains and "--iterations" not in flags
                 else []),
               *(["--precision", precision] if "--precision" not in flags else []),
               # DualSR's PSNR-vs-time curve (scoring time left out of the seconds).
               *(["--curve-every", str(CURVE_EVERY)] if "dualsr" in flags else [])]
    # The true kernels reach a non-blind model when the LR is made on the fly.
    source = DIV2KRK_FLAGS if row == "udvd-gt" else ["--lr", str(lr_dir)]
    with tempfile.TemporaryDirectory() as folder:
        # The per-image seed of the DIV2KRK kernels comes from the file name, so one image
        # alone in a folder gets the kernel it gets among the others.
        single = Path(folder) / hr.name
        single.symlink_to(hr.resolve())
        dynsr("eval", *flags, "--hr", str(single), *source, "--scale", str(scale), *options,
              "--json", str(target))


def claim(part: Path) -> bool:
    """Mark ``part`` as being computed by this process; False if a live process has it.

    Several copies of this script may then share one row (one per free CPU slot): each
    image is run once. A claim left by a process that has gone (a session's end), or an
    empty one older than 10 s (a crash while writing it), is taken over.
    """
    marker = part.with_suffix(".running")
    marker.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(marker, "x") as f:
                f.write(str(os.getpid()))
            return True
        except FileExistsError:
            try:
                text = marker.read_text()
                if not text and time.time() - marker.stat().st_mtime < 10:
                    return False  # a claim being written
                owner = int(text)  # an empty claim left by a crash: ValueError, taken over
                os.kill(owner, 0)
                return False  # a live process runs it
            except (ProcessLookupError, ValueError):
                marker.unlink(missing_ok=True)  # its process is gone: take it over
            except PermissionError:
                return False
    return False


def combine(row: str, parts: list[Path], target: Path, data: Path) -> dict:
    """The row's JSON: per-image results and their means, like one ``dynsr eval`` run."""
    results = [json.loads(p.read_text()) for p in parts]
    images = [image for r in results for image in r["images"]]
    mean = {key: value for key in MEANS if (value := mean_of(images, key)) is not None}
    settings = {**results[0]["settings"], "hr": [str(data)]}
    # Per-image runs may span code changes: name each image's crop sampling when they differ
    # (files without the key drew crops with torch.multinomial).
    sampling = {image["name"]: r["settings"].get("crop_sampling", "torch.multinomial")
                for r in results for image in r["images"]}
    if len(set(sampling.values())) > 1:
        settings["crop_sampling"] = sampling
    combined = {**mean, "images": images, "settings": settings, "row": row}
    if all("curve" in image for image in images):
        combined["curve"] = mean_curve([image["curve"] for image in images])
    atomic_write_json(target, combined)
    return combined


def mean_of(records: list[dict], key: str) -> float | None:
    """The mean of ``key`` over ``records``, or None unless every record has a value."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values and len(values) == len(records) else None


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The images' PSNR-vs-time curves averaged point by point (same iterations in each)."""
    points = []
    for column in zip(*curves, strict=True):
        iterations = {point["iteration"] for point in column}
        if len(iterations) != 1:
            raise ValueError(f"curves scored at different iterations: {sorted(iterations)}")
        points.append({"iteration": iterations.pop(),
                       **{key: round(sum(p[key] for p in column) / len(column), 4)
                          for key in ("seconds", "psnr_y", "ssim_y")}})
    return points


def print_table(out: Path, names: list[str], scale: int) -> None:
    """The rows as a Markdown table beside the paper's (x2). A row still being built shows
    the mean of its images done so far, with bicubic's and DualSR's on the same images."""
    scores = {row: {name: json.loads(path.read_text()) for name in names
                    if (path := out / row / f"{name}.json").exists()} for row in ROWS}
    bicubic = scores["bicubic"]
    print("| row | images | PSNR-Y / SSIM-Y | over bicubic | same images: bicubic / dualsr "
          "| kernel SSE | s / image | paper DIV2KRK | paper over bicubic |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in ROWS:
        done = [name for name in names if name in scores[row] and name in bicubic]
        if not done:
            continue
        psnr, ssim, kernel, seconds = (mean_of([scores[row][n] for n in done], key)
                                       for key in ("psnr_y", "ssim_y", "kernel_sse", "seconds"))
        base = mean_of([bicubic[n] for n in done], "psnr_y")
        same = f"{base:.2f}"
        if len(done) < len(names) and all(n in scores["dualsr"] for n in done):
            same += f" / {mean_of([scores['dualsr'][n] for n in done], 'psnr_y'):.2f}"
        paper = PAPER.get(row) if scale == 2 else None
        cells = [row, f"{len(done)}/{len(names)}", f"{psnr:.2f} / {ssim:.4f}",
                 f"{psnr - base:+.2f}", same if len(done) < len(names) else "",
                 "" if kernel is None else f"{kernel:.4f}",
                 "" if seconds is None else f"{seconds:.0f}",
                 "" if paper is None else f"{paper[0]:.2f} / {paper[1]:.4f}",
                 "" if paper is None else f"{paper[0] - PAPER['bicubic'][0]:+.2f}"]
        print("| " + " | ".join(cells) + " |")


def against_reference(out: Path, names: list[str]) -> None:
    """Each DualSR row against the fp32 3000-iteration reference, paired on the images both
    have: the mean PSNR-Y difference, its standard error over the images (GAN runs differ by
    tenths of a dB from image to image, so a mean gap means little without it) and how many
    images are better."""
    reference = {name: json.loads(path.read_text())["psnr_y"] for name in names
                 if (path := out / "dualsr-reference" / f"{name}.json").exists()}
    for row, flags in ROWS.items():
        if row == "dualsr-reference" or "dualsr" not in flags:
            continue
        diffs = [json.loads(path.read_text())["psnr_y"] - reference[name]
                 for name in names if name in reference
                 and (path := out / row / f"{name}.json").exists()]
        if not diffs:
            continue
        mean = sum(diffs) / len(diffs)
        spread = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)) ** 0.5 \
            if len(diffs) > 1 else float("nan")
        print(f"{row} against dualsr-reference on {len(diffs)} images: {mean:+.3f} dB "
              f"(standard error {spread:.3f}; better on {sum(d > 0 for d in diffs)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Set14 HR folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--scale", type=int, choices=(2, 4), default=2)
    args = parser.parse_args()
    if args.scale == 4 and (other := [r for r in args.rows if r not in X4_ROWS]):
        if args.rows != list(ROWS):
            parser.error(f"at x4 the rows are {', '.join(X4_ROWS)}; not {', '.join(other)}")
        args.rows = list(X4_ROWS)
    lr_dir = args.out / "lr"
    if not (lr_dir / "kernels").is_dir():
        dynsr("degrade", str(args.data), "-o", str(lr_dir), "--scale", str(args.scale),
              *DIV2KRK_FLAGS)
    hr_images = list_images([args.data])
    for row in args.rows:
        parts = [args.out / row / f"{hr.stem}.json" for hr in hr_images]
        for hr, part in zip(hr_images, parts, strict=True):
            if not part.exists() and claim(part):
                try:
                    run_image(row, hr, lr_dir, part, args.iterations, args.precision,
                              args.scale)
                finally:
                    part.with_suffix(".running").unlink()
        done = sum(part.exists() for part in parts)
        if done == len(parts):
            combine(row, parts, args.out / f"{row}.json", args.data)
        else:
            print(f"{row}: {done} of {len(parts)} images done (the rest run elsewhere)")
    print_table(args.out, [hr.stem for hr in hr_images], args.scale)
    against_reference(args.out, [hr.stem for hr in hr_images])
    for row in ROWS:
        path = args.out / f"{row}.json"
        curve = json.loads(path.read_text()).get("curve") if path.exists() else None
        if curve:
            print(f"{row}: mean PSNR-Y vs training seconds: " + ", ".join(
                f"{p['iteration']} it {p['seconds']:.0f} s {p['psnr_y']:.2f}" for p in curve))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
