"""Training data: random patches of HR images with LR made on the fly, or of given pairs.

:func:`build_dataset` turns the ``data.train`` mapping of a training config into an
:class:`SRDataset`; :class:`SampleIndexSampler` feeds it sample numbers.

Configuration (``data.train``; defaults in brackets)
-----------------------------------------------------
Every kind::

    type: hr_folder | paired_realsr | paired_folders    required
    patch_size: int      [96]   HR patch side; a multiple of the scale (LR patch = 96 / s)
    augment: bool        [true] random flips and 90-degree rotations (the 8 symmetries)
    cache: bool          [true] decode every image once, at construction, and keep it in
                                memory as uint8 (291 images ~ 60 MB; DIV2K's 800 ~ 5 GB)
    recursive: bool      [false] also look into sub-folders

``hr_folder``: HR images only, LR made from each patch::

    paths: path or [paths]       required; folders and/or image files
    degradation: bicubic | variational | realistic | blind     [bicubic]
    degradation_options: {}      [{}] per degradation:
      bicubic       none
      variational   width_range [0.2, 3.0], noise_range [0, 75], kernel_size 15,
                    spatially_variant 0.0 (probability of a spatially variant sample)
      blind         see dynsr.degrade.samplers.BlindOptions (the degradation estimator's
                    data: kernel families, noise, spatial variation; adds "dmap")
      realistic     see dynsr.degrade.realistic (kernel_size_range, iso_prob, blur_sigma,
                    downsample_methods, max_shift, noise_prob, gaussian_noise_prob,
                    noise_range, poisson_scale_range, gray_noise_prob, jpeg_prob, jpeg_range)

``paired_realsr``: pairs whose LR is registered and upsampled onto the HR pixel grid (RealSR
v1/v2, City100): LR and HR of one size, cropped at the same place, the LR given to the model as
it is (``forward_prescaled``; the ``-real`` models train at scale 1). Either folders holding
both images of each pair::

    paths: path or [paths]       RealSR's ``NAME_HR`` + ``NAME_LR{s}`` and City100's ``NNNH`` +
                                 ``NNNL`` (``recursive`` for RealSR's tree)
    realsr_scale: int            [the scale] the s of RealSR's ``NAME_LR{s}`` (RealSR keeps an
                                 LR file per zoom; give it when training at scale 1)

or two folders, the pair's images having the same file name (``prepare_city100.py``'s
layout; ``dynsr eval --hr HR --lr LR`` takes the same folders)::

    hr: path or [paths]          HR images
    lr: path or [paths]          LR images on the HR grid, one per HR image

``paired_folders``: the usual layout, HR and LR (at LR size) in two folders::

    hr: path or [paths]          required
    lr: path or [paths]          required; LR file of HR ``NAME.png``: same stem, or the stem
                                 plus a scale suffix (NAMEx2, NAME_x2, NAME-x2, NAME_LR2, ...),
                                 matched as ``dynsr eval --lr`` matches them

Samples
-------
``sample(n)`` returns a dict of tensors (the same keys and shapes for every n, so the default
collate stacks them):

* ``"hr"``: float32 (3, P, P) in [0, 1];
* ``"lr"``: float32 (3, P/s, P/s), or (3, P, P) for ``paired_realsr``; in [0, 1] on the 8-bit
  grid, except ``variational``, whose AWGN is neither clipped nor re-quantised (SRMD and UDVD
  train on it as is);
* ``"prescaled"``: bool scalar, True when ``"lr"`` is already at the HR size (RealSR);
* ``variational`` only: ``"blur"``, the Gaussian width (standard deviation in HR pixels), and
  ``"noise"``, the AWGN sigma on 0..255. Scalars () when ``spatially_variant`` is 0; otherwise
  (1, P/s, P/s) maps on the **LR grid** for every sample (constant for the spatially invariant
  ones), as UDVD's ``blur=`` and ``noise=`` inputs take them.

Grayscale images are replicated to RGB, alpha is dropped, 16-bit images are rounded to 8 bit
(the LR is 8-bit anyway). Images smaller than the patch (or whose LR is smaller than the LR
patch) are skipped with one warning; none left is an error.

Determinism
-----------
Sample n uses image ``perm_e[n % N]`` with ``e = n // N`` and ``perm_e`` a permutation of the
N images seeded by (seed, e); everything else (crop, degradation parameters, noise,
augmentation) comes from one ``torch.Generator`` seeded by (seed, n). Seeds are mixed with
BLAKE2b (:func:`mix_seed`), not Python's per-process salted ``hash``. So any sample can be
made again, in any process, after a resume, on any rank. Draw order: crop position,
degradation parameters, degradation noise, augmentation.

Patch borders
-------------
LR made on the fly is computed from the patch *plus* enough image context that no pixel of
the LR patch sees a padded border: the HR crop is extended by ``c`` LR pixels (``c*s`` HR
pixels) on each side, degraded, and the LR trimmed by ``c`` (the HR target is the inner
patch). ``c`` covers the blur kernel's half width and the bicubic filter's reach of 2s HR
pixels: 2 for bicubic; 6/5/4 for variational at x2/x3/x4 (15x15 kernels); 9/8/7 for
realistic (21x21 kernels, and the shift). Patches are taken at HR positions that are
multiples of s, so the bicubic LR patch equals the same crop of the whole image's LR exactly,
as ``dynsr eval`` makes it. Context that falls outside the image is mirrored (half-sample
symmetric), which is MATLAB imresize's own border rule, so even border patches match it;
the blur of the variational kind replicate-pads at whole-image borders instead, so there a
border patch differs slightly from degrading the whole image. Cropping first and bicubic-ing
the patch alone (BasicSR style) would instead give the LR patch's outer 2 pixels a mirrored
context that the whole image does not have. With ``cache: true`` the bicubic kind keeps each
whole image's LR (uint8, made on first use) and crops it: the same samples, bit for bit, at
a tenth of the cost (0.05 instead of 0.6 ms for a 128-pixel x2 patch).

Spatially variant degradations (``variational``)
------------------------------------------------
A fraction ``spatially_variant`` of the samples get random width and noise fields (ramps or
smooth hills): :mod:`dynsr.degrade.samplers` describes them. The degradation samplers
themselves live there; this module crops, seeds, augments and batches.
"""

from __future__ import annotations

import abc
import hashlib
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from dynsr.degrade import realistic
from dynsr.degrade.samplers import (
    BicubicSampler,
    BlindOptions,
    BlindSampler,
    RealisticSampler,
    VariationalOptions,
    VariationalSampler,
    trim,
)
from dynsr.io import ImageReadError, list_images, read_image
from dynsr.ops import imresize

__all__ = [
    "DATASET_TYPES",
    "DEGRADATIONS",
    "HRFolderDataset",
    "PairedFoldersDataset",
    "PairedRealSRDataset",
    "SRDataset",
    "SampleIndexSampler",
    "VariationalOptions",
    "build_dataset",
    "mix_seed",
]

DATASET_TYPES = ("hr_folder", "paired_realsr", "paired_folders")
DEGRADATIONS = ("bicubic", "variational", "realistic", "blind")

_COMMON_KEYS = ("type", "patch_size", "augment", "cache", "recursive")
_KEYS = {
    "hr_folder": (*_COMMON_KEYS, "paths", "degradation", "degradation_options"),
    "paired_realsr": (*_COMMON_KEYS, "paths", "realsr_scale", "hr", "lr"),
    "paired_folders": (*_COMMON_KEYS, "hr", "lr"),
}
# City100's pair NNNH / NNNL (Chen et al., CVPR 2019: long / short focal length).
_CITY100_HR = re.compile(r"^(\d+)H$")

# Stream tags keep the image-order and per-sample seeds apart even when the numbers collide.
_PERMUTATION_STREAM = 1
_SAMPLE_STREAM = 2

_ORIENTATION_TAG = 0x0112


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers, identical on every machine and Python process (BLAKE2b)."""
    text = ",".join(str(int(part)) for part in parts).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(mix_seed(*parts))


# --------------------------------------------------------------------------------------------
# Images


def _decode(path: Path) -> torch.Tensor:
    """uint8 (C, H, W), C = 1 or 3: the file's pixels rounded to 8 bit (exact for 8-bit files)."""
    pixels = read_image(path).pixels
    return (pixels * 255).round_().to(torch.uint8)


def _header_size(path: Path) -> tuple[int, int]:
    """(height, width) as displayed (EXIF orientation applied), read from the header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # Pillow raises many types on damaged headers
        raise ImageReadError(path, f"cannot read the image header: {exc}") from exc
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


class _ImageStore:
    """Images by index as uint8 tensors: decoded once up front (cache) or at every use."""

    def __init__(self, paths: Sequence[Path], cache: bool) -> None:
        self.paths = list(paths)
        self.cache = cache
        # Decoding in the constructor (not lazily) lets DataLoader workers forked later share
        # the pages instead of each decoding its own copy.
        self._images = [_decode(p) for p in self.paths] if cache else None
        if self._images is not None:
            self.sizes = [tuple(image.shape[-2:]) for image in self._images]
        else:
            self.sizes = [_header_size(p) for p in self.paths]

    def select(self, indices: Sequence[int]) -> _ImageStore:
        chosen = object.__new__(_ImageStore)
        chosen.paths = [self.paths[i] for i in indices]
        chosen.cache = self.cache
        chosen._images = None if self._images is None else [self._images[i] for i in indices]
        chosen.sizes = [self.sizes[i] for i in indices]
        return chosen

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        image = _decode(self.paths[index])
        if tuple(image.shape[-2:]) != self.sizes[index]:
            raise ImageReadError(self.paths[index], "image changed size since the data set was "
                                 "built")
        return image


def _mirror(start: int, length: int, size: int) -> torch.Tensor:
    # Half-sample symmetric indices (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...), MATLAB imresize's rule.
    index = torch.remainder(torch.arange(start, start + length), 2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def _crop(image: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """float32 (3, height, width) in [0, 1] from uint8 ``image``; outside pixels mirrored."""
    rows, cols = image.shape[-2:]
    if 0 <= top and top + height <= rows and 0 <= left and left + width <= cols:
        patch = image[:, top:top + height, left:left + width]
    else:
        patch = image.index_select(1, _mirror(top, height, rows))
        patch = patch.index_select(2, _mirror(left, width, cols))
    patch = patch.to(torch.float32) / 255  # convert only the crop, not the whole image
    return patch.expand(3, -1, -1) if patch.shape[0] == 1 else patch


def _randint(gen: torch.Generator, high: int) -> int:
    """Uniform integer in [0, high]."""
    return int(torch.randint(high + 1, (), generator=gen))


# --------------------------------------------------------------------------------------------
# Datasets


def _augment(sample: dict[str, torch.Tensor], gen: torch.Generator) -> None:
    """One of the 8 flips/rotations, the same for every image-like (3-D) tensor, in place."""
    hflip, vflip, transpose = (torch.rand(3, generator=gen) < 0.5).tolist()
    for key, value in sample.items():
        if value.dim() != 3:
            continue
        if hflip:
            value = value.flip(-1)
        if vflip:
            value = value.flip(-2)
        if transpose:
            value = value.transpose(-2, -1)
        sample[key] = value.contiguous()


class SRDataset(Dataset, abc.ABC):
    """Random training patches, sample n a pure function of (seed, n); see the module doc."""

    def __init__(self, *, scale: int, seed: int, patch_size: int, augment: bool,
                 num_sources: int) -> None:
        self.scale = scale
        self.seed = seed
        self.patch_size = patch_size
        self.augment = augment
        self._num_sources = num_sources
        self._permutation_cache: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        """Number of distinct source images (or pairs)."""
        return self._num_sources

    def image_index(self, n: int) -> int:
        """Which source sample n uses: epoch e = n // len, position n % len of perm_e."""
        epoch, position = divmod(n, self._num_sources)
        cached = self._permutation_cache
        if cached is None or cached[0] != epoch:
            gen = _generator(self.seed, _PERMUTATION_STREAM, epoch)
            cached = (epoch, torch.randperm(self._num_sources, generator=gen))
            self._permutation_cache = cached
        return int(cached[1][position])

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """The n-th training sample of the whole run (n = 0, 1, 2, ...)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"sample number must be a non-negative int, got {n!r}")
        gen = _generator(self.seed, _SAMPLE_STREAM, n)
        sample = self._make(self.image_index(n), gen)
        if self.augment:
            _augment(sample, gen)
        return sample

    def __getitem__(self, n: int) -> dict[str, torch.Tensor]:
        return self.sample(int(n))

    @abc.abstractmethod
    def _make(self, index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """The un-augmented sample of source ``index``, every random choice drawn from ``gen``."""


def _keep_large_enough(sizes: Sequence[tuple[int, int]], minimum: Sequence[int],
                       paths: Sequence[Path], what: str) -> list[int]:
    keep = [i for i, size in enumerate(sizes) if min(size) >= minimum[i]]
    kept = set(keep)
    skipped = [paths[i] for i in range(len(sizes)) if i not in kept]
    if skipped:
        names = ", ".join(p.name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(f"data.train: skipped {len(skipped)} {what} smaller than the patch: "
                      f"{names}", stacklevel=3)
    if not keep:
        raise ValueError(f"data.train: no {what} left: all are smaller than the patch")
    return keep


class HRFolderDataset(SRDataset):
    """HR images; LR made from each patch by ``degradation`` (bicubic/variational/realistic)."""

    def __init__(self, paths: Sequence[Path], *, scale: int, seed: int, patch_size: int,
                 augment: bool, cache: bool, degradation: str = "bicubic",
                 degradation_options: Mapping | None = None) -> None:
        where = "data.train.degradation_options"
        options = dict(degradation_options or {})
        if degradation == "bicubic":
            if options:
                raise ValueError(f"{where}.{next(iter(options))}: unknown key (the bicubic "
                                 f"degradation has no options)")
            self.degradation = BicubicSampler()
        elif degradation == "variational":
            self.degradation = VariationalSampler(VariationalOptions.from_mapping(options, where))
        elif degradation == "blind":
            self.degradation = BlindSampler(BlindOptions.from_mapping(options, where))
        elif degradation == "realistic":
            options = realistic.RealisticOptions.from_mapping(options, where)
            self.degradation = RealisticSampler(options)
        else:
            raise ValueError(f"data.train.degradation: expected one of "
                             f"{', '.join(DEGRADATIONS)}, got {degradation!r}")
        self.degradation_name = degradation
        self.context = self.degradation.context(scale)  # LR pixels of context per side
        store = _ImageStore(paths, cache)
        keep = _keep_large_enough(store.sizes, [patch_size] * len(store), store.paths, "images")
        self.images = store.select(keep)
        kept = set(keep)
        self.skipped = [p for i, p in enumerate(store.paths) if i not in kept]
        # Bicubic LR of whole images, as uint8, made on first use (cached images only).
        self._whole_lr: dict[int, torch.Tensor] | None = (
            {} if degradation == "bicubic" and cache else None)
        super().__init__(scale=scale, seed=seed, patch_size=patch_size, augment=augment,
                         num_sources=len(self.images))

    def _whole_image_lr(self, index: int) -> torch.Tensor:
        lr = self._whole_lr.get(index)
        if lr is None:
            image = self.images.get(index).to(torch.float32) / 255
            image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
            lr = imresize(image, scale=1.0 / self.scale).clamp(0.0, 1.0)
            lr = torch.floor(lr * 255 + 0.5).to(torch.uint8)  # quantize()'s rounding
            self._whole_lr[index] = lr
        return lr

    def _make(self, index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        s, patch, border = self.scale, self.patch_size, self.context * self.scale
        height, width = self.images.sizes[index]
        # Patch origin on a multiple of s: the LR patch then sits on the whole image's LR grid.
        top = s * _randint(gen, (height - patch) // s)
        left = s * _randint(gen, (width - patch) // s)
        if self._whole_lr is not None:
            # Same sample as below (the bicubic LR patch is a crop of the whole image's LR),
            # without degrading the patch's context again at every draw.
            lr = self._whole_image_lr(index)[:, top // s:(top + patch) // s,
                                              left // s:(left + patch) // s]
            hr = self.images.get(index)[:, top:top + patch, left:left + patch]
            hr = hr.expand(3, -1, -1) if hr.shape[0] == 1 else hr
            return {"lr": lr.to(torch.float32) / 255, "hr": hr.to(torch.float32) / 255,
                    "prescaled": torch.tensor(False)}
        hr = _crop(self.images.get(index), top - border, left - border,
                   patch + 2 * border, patch + 2 * border)
        sample = self.degradation(hr, s, self.context, gen)
        sample["hr"] = trim(hr, border).contiguous()
        sample["prescaled"] = torch.tensor(False)
        return sample


def _grid_pairs_in(paths: Sequence[Path], realsr_scale: int) -> list[tuple[Path, Path]]:
    """(HR, LR) pairs among ``paths``: RealSR's ``NAME_HR`` + ``NAME_LR{s}`` and City100's
    ``NNNH`` + ``NNNL``, each pair in one folder."""
    by_stem = {(p.parent, p.stem): p for p in paths}
    pairs, missing = [], []
    for path in paths:
        city100 = _CITY100_HR.match(path.stem)
        if path.stem.endswith("_HR"):
            partner = f"{path.stem[:-3]}_LR{realsr_scale}"
        elif city100 is not None:
            partner = f"{city100.group(1)}L"
        else:
            continue
        lr = by_stem.get((path.parent, partner))
        if lr is None:
            missing.append(path)
        else:
            pairs.append((path, lr))
    if missing:
        names = ", ".join(p.name for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        warnings.warn(f"data.train: skipped {len(missing)} HR image(s) without a partner "
                      f"(*_LR{realsr_scale}, or NNNL for NNNH): {names}", stacklevel=3)
    if not pairs:
        raise ValueError(f"data.train.paths: no pairs found (RealSR's NAME_HR + "
                         f"NAME_LR{realsr_scale}: set data.train.realsr_scale for other LR "
                         f"files; City100's NNNH + NNNL)")
    return pairs


def _same_name_pairs(hr_paths: Sequence[Path],
                     lr_paths: Sequence[Path]) -> list[tuple[Path, Path]]:
    """(HR, LR) pairs of two folders, matched by file name (stem: the suffix may differ)."""
    by_stem: dict[str, Path] = {}
    for path in lr_paths:
        by_stem.setdefault(path.stem, path)
    pairs = []
    for hr in hr_paths:
        lr = by_stem.get(hr.stem)
        if lr is None:
            raise ValueError(f"{hr}: no LR image of the same name among the {len(lr_paths)} "
                             f"LR images (data.train.lr)")
        pairs.append((hr, lr))
    return pairs


class PairedRealSRDataset(SRDataset):
    """Pairs whose LR is on the HR grid (RealSR, City100): equal sizes, same-place crops,
    ``prescaled``. ``pairs``: (HR path, LR path) each."""

    def __init__(self, pairs: Sequence[tuple[Path, Path]], *, scale: int, seed: int,
                 patch_size: int, augment: bool, cache: bool) -> None:
        hr_store = _ImageStore([hr for hr, _ in pairs], cache)
        lr_store = _ImageStore([lr for _, lr in pairs], cache)
        for (hr_path, lr_path), hr_size, lr_size in zip(pairs, hr_store.sizes, lr_store.sizes,
                                                        strict=True):
            if hr_size != lr_size:
                raise ValueError(f"{lr_path}: the LR of a pair is on the HR grid (RealSR, "
                                 f"City100), but this is {lr_size[1]}x{lr_size[0]} and "
                                 f"{hr_path.name} is {hr_size[1]}x{hr_size[0]}")
        keep = _keep_large_enough(hr_store.sizes, [patch_size] * len(pairs), hr_store.paths,
                                  "pairs")
        self.hr_images, self.lr_images = hr_store.select(keep), lr_store.select(keep)
        super().__init__(scale=scale, seed=seed, patch_size=patch_size, augment=augment,
                         num_sources=len(keep))

    def _make(self, index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        patch = self.patch_size
        height, width = self.hr_images.sizes[index]
        top, left = _randint(gen, height - patch), _randint(gen, width - patch)
        return {
            "lr": _crop(self.lr_images.get(index), top, left, patch, patch).contiguous(),
            "hr": _crop(self.hr_images.get(index), top, left, patch, patch).contiguous(),
            "prescaled": torch.tensor(True),
        }


def _lr_partners(hr_paths: Sequence[Path], lr_paths: Sequence[Path],
                 scale: int) -> list[Path]:
    """The LR file of each HR file: same stem, or stem + scale suffix (``dynsr eval --lr``)."""
    suffix = re.compile(rf"(?:[_-]?(?:x|lr|LR|LRx)?{scale})$")
    by_key: dict[str, Path] = {}
    for path in lr_paths:  # the first match in listing order wins, as in dynsr eval
        by_key.setdefault(path.stem, path)
        base = suffix.sub("", path.stem)
        if base != path.stem:
            by_key.setdefault(base, path)
    partners = []
    for hr in hr_paths:
        partner = by_key.get(hr.stem)
        if partner is None:
            raise ValueError(f"{hr}: no LR image for it among the {len(lr_paths)} LR images "
                             f"(expected {hr.stem}, {hr.stem}x{scale}, {hr.stem}_x{scale}, "
                             f"{hr.stem}_LR{scale}, ...)")
        partners.append(partner)
    return partners


class PairedFoldersDataset(SRDataset):
    """HR images with given LR images at LR size: aligned crops (LR (y, x), HR (s y, s x))."""

    def __init__(self, hr_paths: Sequence[Path], lr_paths: Sequence[Path], *, scale: int,
                 seed: int, patch_size: int, augment: bool, cache: bool) -> None:
        partners = _lr_partners(hr_paths, lr_paths, scale)
        hr_store = _ImageStore(hr_paths, cache)
        lr_store = _ImageStore(partners, cache)
        for hr_path, lr_path, hr_size, lr_size in zip(hr_paths, partners, hr_store.sizes,
                                                      lr_store.sizes, strict=True):
            if any(not size // scale <= lr <= -(-size // scale)
                   for size, lr in zip(hr_size, lr_size, strict=True)):
                raise ValueError(f"{lr_path}: {lr_size[1]}x{lr_size[0]} is not the x{scale} LR "
                                 f"size of {hr_path.name} ({hr_size[1]}x{hr_size[0]})")
        # The LR crop must fit too: a 97-pixel HR has a 48-pixel LR at x2 (floor) or 49.
        minimum = [patch_size if min(lr) * scale >= patch_size else math.inf
                   for lr in lr_store.sizes]
        keep = _keep_large_enough(hr_store.sizes, minimum, hr_store.paths, "pairs")
        self.hr_images, self.lr_images = hr_store.select(keep), lr_store.select(keep)
        super().__init__(scale=scale, seed=seed, patch_size=patch_size, augment=augment,
                         num_sources=len(keep))

    def _make(self, index: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        s, patch = self.scale, self.patch_size
        lr_patch = patch // s
        height, width = self.hr_images.sizes[index]
        lr_height, lr_width = self.lr_images.sizes[index]
        top = _randint(gen, min(lr_height - lr_patch, (height - patch) // s))
        left = _randint(gen, min(lr_width - lr_patch, (width - patch) // s))
        return {
            "lr": _crop(self.lr_images.get(index), top, left, lr_patch, lr_patch).contiguous(),
            "hr": _crop(self.hr_images.get(index), s * top, s * left, patch,
                        patch).contiguous(),
            "prescaled": torch.tensor(False),
        }


# --------------------------------------------------------------------------------------------
# Sampler


class SampleIndexSampler(Sampler[int]):
    """Sample numbers for one process: n = (it * world_size + rank) * batch_size + b.

    Iteration ``it`` runs from ``start_iteration`` up to ``iterations`` (exclusive; the total
    length of the schedule, so a resumed run passes the same value) or forever when None;
    b = 0 .. batch_size - 1. Together the ranks take every n exactly once, and iteration it
    of a resumed run gets the same samples as in an uninterrupted one. Use it with
    ``DataLoader(dataset, batch_size=batch_size, sampler=...)``.
    """

    def __init__(self, batch_size: int, rank: int = 0, world_size: int = 1,
                 start_iteration: int = 0, iterations: int | None = None) -> None:
        super().__init__()
        for name, value, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1),
                                 ("rank", rank, 0), ("start_iteration", start_iteration, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if rank >= world_size:
            raise ValueError(f"rank {rank} is not below world_size {world_size}")
        if iterations is not None and (isinstance(iterations, bool)
                                       or not isinstance(iterations, int) or iterations < 0):
            raise ValueError(f"iterations must be None or an int >= 0, got {iterations!r}")
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_iteration = start_iteration
        self.iterations = iterations

    def __iter__(self) -> Iterator[int]:
        iteration = self.start_iteration
        while self.iterations is None or iteration < self.iterations:
            first = (iteration * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            iteration += 1

    def __len__(self) -> int:
        if self.iterations is None:
            raise TypeError("an endless SampleIndexSampler (iterations=None) has no length")
        return max(0, self.iterations - self.start_iteration) * self.batch_size


# --------------------------------------------------------------------------------------------
# Config


def _bool(cfg: Mapping, key: str, default: bool) -> bool:
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"data.train.{key}: expected true or false, got {value!r}")
    return value


def _path_list(cfg: Mapping, key: str) -> list[Path]:
    if key not in cfg:
        raise ValueError(f"data.train.{key}: required for type {cfg['type']!r}")
    value = cfg[key]
    items = [value] if isinstance(value, str | os.PathLike) else value
    if (not isinstance(items, list | tuple) or not items
            or not all(isinstance(v, str | os.PathLike) for v in items)):
        raise ValueError(f"data.train.{key}: expected a path or a non-empty list of paths, "
                         f"got {value!r}")
    return [Path(v).expanduser() for v in items]


def _images(cfg: Mapping, key: str, recursive: bool) -> list[Path]:
    found = list_images(_path_list(cfg, key), recursive=recursive)
    if not found:
        raise ValueError(f"data.train.{key}: no images found in {cfg[key]!r}"
                         + ("" if recursive else " (set recursive: true for sub-folders)"))
    return found


def _grid_pairs(cfg: Mapping, scale: int, recursive: bool) -> list[tuple[Path, Path]]:
    """The pairs of a ``paired_realsr`` mapping: ``paths``, or ``hr`` with ``lr``."""
    folders = "hr" in cfg or "lr" in cfg
    if folders == ("paths" in cfg):
        raise ValueError("data.train: give paths (folders holding both images of each pair), "
                         "or hr and lr (two folders, same file names), for paired_realsr")
    if folders:
        if "realsr_scale" in cfg:
            raise ValueError("data.train.realsr_scale: names RealSR's LR files in paths; hr and "
                             "lr pair images by file name")
        return _same_name_pairs(_images(cfg, "hr", recursive), _images(cfg, "lr", recursive))
    realsr_scale = cfg.get("realsr_scale", scale)
    if isinstance(realsr_scale, bool) or not isinstance(realsr_scale, int) or realsr_scale < 1:
        raise ValueError(f"data.train.realsr_scale: expected a positive int, got "
                         f"{realsr_scale!r}")
    return _grid_pairs_in(_images(cfg, "paths", recursive), realsr_scale)


def build_dataset(cfg: Mapping, scale: int, seed: int) -> SRDataset:
    """The training data set described by ``cfg`` (the ``data.train`` mapping; module doc)."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"data.train: expected a mapping, got {type(cfg).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    kind = cfg.get("type")
    if kind not in _KEYS:
        raise ValueError(f"data.train.type: expected one of {', '.join(DATASET_TYPES)}, "
                         f"got {kind!r}")
    for key in cfg:
        if key not in _KEYS[kind]:
            raise ValueError(f"data.train.{key}: unknown key for type {kind!r} "
                             f"(known: {', '.join(_KEYS[kind])})")
    patch_size = cfg.get("patch_size", 96)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"data.train.patch_size: expected a positive int, got {patch_size!r}")
    if patch_size % scale:
        raise ValueError(f"data.train.patch_size: {patch_size} is not a multiple of the scale "
                         f"{scale}")
    common = {
        "scale": scale,
        "seed": seed,
        "patch_size": patch_size,
        "augment": _bool(cfg, "augment", True),
        "cache": _bool(cfg, "cache", True),
    }
    recursive = _bool(cfg, "recursive", False)
    if scale == 1 and kind != "paired_realsr":
        raise ValueError(f"data.train.type: scale 1 trains on pairs whose LR is already on the "
                         f"HR grid (paired_realsr), not {kind}")
    if kind == "hr_folder":
        options = cfg.get("degradation_options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"data.train.degradation_options: expected a mapping, "
                             f"got {options!r}")
        return HRFolderDataset(_images(cfg, "paths", recursive),
                               degradation=cfg.get("degradation", "bicubic"),
                               degradation_options=options, **common)
    if kind == "paired_realsr":
        return PairedRealSRDataset(_grid_pairs(cfg, scale, recursive), **common)
    return PairedFoldersDataset(_images(cfg, "hr", recursive), _images(cfg, "lr", recursive),
                                **common)
