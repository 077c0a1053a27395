"""Scoring existing SR results (from any tool) against HR images by dynsr's protocol.

SR files are matched to HR files by name: the SR file's stem is the HR stem, or the HR stem
followed by a separator and anything (``baby.png`` for ``baby.png``; ``baby_x2.png``,
``baby-SwinIR.png``, ``baby_x2_out.png``), the longest HR stem winning (``img_1_x2`` belongs
to ``img_1``, not ``img``). Each pair is scored as ``dynsr eval`` scores (the SR rounded to
8 bit, Y channel, ``crop`` border left out, float64; the data-set score is the mean of the
per-image scores). With ``scale``, HR images are first cropped at the top-left to a multiple
of it, as benchmarks make their LR images; otherwise the sizes must match exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tqdm import tqdm

from dynsr.evaluation.degradation import modcrop
from dynsr.evaluation.protocol import EvalResult
from dynsr.io import ImageReadError, list_images, load_tensor
from dynsr.metrics import evaluate_pair

__all__ = ["match_by_name", "score_folders"]

SEPARATORS = "_-. "


def _owner(sr_stem: str, hr_stems: list[str]) -> str | None:
    """The longest HR stem that ``sr_stem`` is, or starts with followed by a separator."""
    owners = [s for s in hr_stems if sr_stem == s
              or (sr_stem.startswith(s) and sr_stem[len(s)] in SEPARATORS)]
    return max(owners, key=len) if owners else None


def match_by_name(sr_paths: list[Path],
                  hr_paths: list[Path]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(HR, SR) pairs in HR order, and one message per HR image without exactly one SR
    image (none, or several that cannot be told apart)."""
    stems = [p.stem for p in hr_paths]
    if len(set(stems)) != len(stems):
        doubles = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"HR images share names ({', '.join(doubles)}): SR files could not "
                         "be matched to them")
    found: dict[str, list[Path]] = {s: [] for s in stems}
    for sr in sr_paths:
        owner = _owner(sr.stem, stems)
        if owner is not None:
            found[owner].append(sr)
    pairs, problems = [], []
    for hr in hr_paths:
        candidates = found[hr.stem]
        exact = [p for p in candidates if p.stem == hr.stem]
        if len(exact) == 1 or len(candidates) == 1:
            pairs.append((hr, (exact or candidates)[0]))
        elif not candidates:
            problems.append(f"{hr}: no SR image named after it")
        else:
            names = ", ".join(p.name for p in candidates)
            problems.append(f"{hr}: several SR images named after it ({names})")
    return pairs, problems


def score_folders(sr: Path | list[Path], hr: Path | list[Path], *, crop: int,
                  scale: int | None = None, recursive: bool = False,
                  label: str = "dynsr score") -> EvalResult:
    """PSNR-Y / SSIM-Y of the SR images in ``sr`` against their HR images in ``hr`` (files
    or folders; module doc). Pairs that cannot be matched, read or measured are skipped with
    a one-line message (starting with ``label``) and counted in ``failures``."""
    if crop < 0:
        raise ValueError(f"crop must be >= 0, got {crop}")
    if scale is not None and scale < 1:
        raise ValueError(f"scale must be positive, got {scale}")
    hr_paths = list_images(hr, recursive=recursive)
    if not hr_paths:
        raise ValueError(f"no HR images found in {hr}")
    pairs, problems = match_by_name(list_images(sr, recursive=recursive), hr_paths)
    for problem in problems:
        tqdm.write(f"{label}: skipped: {problem}", file=sys.stderr)
    rows, failures = [], len(problems)
    for hr_path, sr_path in tqdm(pairs, desc="score", unit="img", disable=None, leave=False):
        try:
            hr_image = load_tensor(hr_path).to(torch.float64)
            if scale is not None:
                hr_image = modcrop(hr_image, scale)
            sr_image = load_tensor(sr_path).to(torch.float64)
            if sr_image.shape != hr_image.shape:
                cropped = f" (after cropping to a multiple of {scale})" if scale else ""
                hint = "" if scale else "; give the scale if the HR was not cropped to it"
                raise ValueError(f"{sr_path}: SR {tuple(sr_image.shape)} does not match HR "
                                 f"{hr_path} {tuple(hr_image.shape)}{cropped}{hint}")
            scores = evaluate_pair(sr_image, hr_image, crop)
        except (ImageReadError, ValueError, OSError) as err:
            failures += 1
            tqdm.write(f"{label}: skipped: {err}", file=sys.stderr)
            continue
        rows.append({"name": hr_path.stem, "sr": str(sr_path), **scores})
    return EvalResult(rows, failures)
