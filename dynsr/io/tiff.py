"""TIFF through tifffile: 8- and 16-bit gray / RGB, with alpha, read and written exactly.

Pillow reads 16-bit colour TIFF as 8 bits a sample, so dynsr decodes TIFF with tifffile
whenever it is a plain 8- or 16-bit unsigned gray or RGB image (any planar layout, an
extra sample as alpha, the ICC profile and orientation tags kept) in a compression
tifffile decodes by itself (none, deflate, LZMA, PackBits). Other TIFFs (palette, CMYK,
YCbCr, 1 bit) and 8-bit ones in a compression that needs the ``imagecodecs`` package (LZW,
JPEG) go to Pillow, which handles them properly; a 16-bit one of those is refused with a
clear message unless ``imagecodecs`` is installed. Written TIFFs are deflate-compressed
(zlib: readable everywhere, no extra package), alpha as an unassociated extra sample.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import tifffile

from dynsr.io.samples import DecodedSamples

__all__ = ["decode", "encode", "is_tiff"]

_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF
_ICC_TAG, _ORIENTATION_TAG = 34675, 274
_ALPHA = {tifffile.EXTRASAMPLE.UNASSALPHA, tifffile.EXTRASAMPLE.UNSPECIFIED}


def is_tiff(header: bytes) -> bool:
    return header[:4] in _MAGIC


def _plain(page: tifffile.TiffPage) -> bool:
    """Whether dynsr decodes ``page`` itself (module doc)."""
    return (page.photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB)
            and page.sampleformat == tifffile.SAMPLEFORMAT.UINT
            and page.bitspersample in (8, 16) and page.ndim in (2, 3))


def decode(data: bytes, check_size: Callable[[int, int], None]) -> DecodedSamples | None:
    """The samples of the first image of TIFF ``data``, or None when Pillow should decode it.

    ``check_size(width, height)`` runs before any pixel is decoded. Raises ``ValueError``
    with the reason for a damaged file or a 16-bit one that cannot be decoded here."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            if not _plain(page):
                return None
            check_size(page.imagewidth, page.imagelength)
            compression = page.compression
            if compression not in tifffile.TIFF.DECOMPRESSORS:  # needs imagecodecs
                if page.bitspersample == 8:
                    return None
                raise ValueError(f"16-bit TIFF in {compression.name} compression needs the "
                                 "imagecodecs package (pip install imagecodecs)")
            samples = page.asarray()
            if page.axes.startswith("S"):  # planar: samples first
                samples = np.moveaxis(samples, 0, -1)
            tags = page.tags
            icc = tags[_ICC_TAG].value if _ICC_TAG in tags else None
            orientation = int(tags[_ORIENTATION_TAG].value) if _ORIENTATION_TAG in tags else 1
            extras = tuple(page.extrasamples)
    except ValueError:
        raise
    except Exception as exc:  # tifffile raises many kinds on damaged files
        raise ValueError(f"truncated or corrupt TIFF: {exc}") from exc
    if samples.ndim == 2:
        samples = samples[..., None]
    colours = 1 if page.photometric == tifffile.PHOTOMETRIC.MINISBLACK else 3
    colour = samples[..., :colours]
    alpha = None
    if extras and extras[0] in _ALPHA:
        alpha = samples[..., colours:colours + 1]
    elif extras and extras[0] == tifffile.EXTRASAMPLE.ASSOCALPHA:  # premultiplied: undo
        alpha = samples[..., colours:colours + 1]
        maxval = np.iinfo(samples.dtype).max
        scaled = colour.astype(np.float64) * maxval / np.maximum(alpha, 1)
        colour = np.floor(np.clip(scaled, 0, maxval) + 0.5).astype(samples.dtype)
    bits = page.bitspersample
    mode = ("L" if colours == 1 else "RGB") + ("A" if alpha is not None else "")
    if bits == 16:
        mode = "I;16" if mode == "L" else f"{mode};16"
    return DecodedSamples(np.ascontiguousarray(colour),
                          None if alpha is None else np.ascontiguousarray(alpha), bits, mode,
                          bytes(icc) if icc else None, None, orientation)


def encode(samples: np.ndarray, icc_profile: bytes | None) -> bytes:
    """(H, W, C) uint8 / uint16 samples, alpha last when C is 2 or 4, as a deflate TIFF."""
    channels = samples.shape[2]
    options: dict = {"photometric": "minisblack" if channels <= 2 else "rgb",
                     "compression": "zlib", "metadata": None}
    if channels in (2, 4):
        options["extrasamples"] = ["unassalpha"]
    if icc_profile:
        options["iccprofile"] = icc_profile
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, samples[..., 0] if channels == 1 else samples, **options)
    return buffer.getvalue()
