"""Write float tensors (or integer samples) as image files, atomically, keeping bit depth,
alpha and colour metadata; the format follows the suffix (:func:`write_image`)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, features

from dynsr.io import png16, tiff
from dynsr.io.atomic import atomic_write_bytes
from dynsr.io.errors import ImageWriteError
from dynsr.io.image import _FORMATS_BY_SUFFIX, _with_exif_header

__all__ = ["PNG_COMPRESSION", "SIXTEEN_BIT_SUFFIXES", "write_image"]

#: zlib level of written PNGs. 3 rather than Pillow's 6: measured on an 8.4-megapixel photo
#: (coffee resized to 3552 x 2368), level 6 took 2.66 s for 6.0 MB, 3 took 1.05 s for 6.7 MB,
#: 1 took 0.71 s for 7.3 MB; at x2 of a 24-megapixel photo level 6 would take several times
#: as long as the upscaling itself.
PNG_COMPRESSION = 3
#: Suffixes of the formats dynsr writes in 16 bit.
SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")


def write_image(
    path: str | os.PathLike[str],
    pixels: torch.Tensor | np.ndarray,
    alpha: torch.Tensor | np.ndarray | None = None,
    *,  # options by name: a stray positional 16 must not become the alpha channel
    bit_depth: int = 8,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int = 95,
    png_compression: int = PNG_COMPRESSION,
) -> Path:
    """Write float pixels in ``[0, 1]`` (or integer samples) to ``path``; the format follows
    the suffix.

    ``pixels``: a ``(C, H, W)`` or ``(H, W)`` tensor, or an ``(H, W, C)`` or ``(H, W)`` numpy
    array, C = 1 or 3; ``alpha`` likewise with one channel. Values are clamped to [0, 1] and
    quantised as ``floor(x * maxval + 0.5)`` (maxval 255 or 65535), which is MATLAB's
    im2uint8/im2uint16 rounding: halves go up, not to even, and reading a file back and
    writing it again reproduces every sample exactly. uint8 / uint16 samples are written as
    they are when they have the file's bit depth, else read as ``v / 255`` or ``v / 65535``.

    Formats: .png (8 or 16 bit, gray/RGB, alpha; zlib level ``png_compression`` 0-9, default
    :data:`PNG_COMPRESSION`); .jpg/.jpeg (8 bit, no alpha, ``quality``,
    4:4:4 chroma so colour detail is not halved); .webp (8 bit, alpha, ``quality``, lossless
    at 100; gray is stored as RGB); .avif (8 bit, alpha, ``quality``, 4:4:4; gray stored as
    RGB; where Pillow has libavif); .tif/.tiff (8 or 16 bit, gray/RGB, alpha, deflate, ICC
    kept, EXIF not); .bmp (8 bit, no alpha, no metadata). EXIF is kept in PNG, JPEG, WebP
    and AVIF.

    The file appears atomically: bytes go to a hidden ``.*.tmp`` file in the same folder,
    which is fsynced and renamed over ``path``; on failure it is removed and an existing
    ``path`` is left untouched. Missing parent folders are created. Every failure to do what
    was asked is an :class:`ImageWriteError`; the written path is returned.
    """
    path = Path(path)
    image_format = _checked_format(path, bit_depth, quality, png_compression)

    colour = _as_hwc(path, pixels, "pixels")
    if colour.shape[2] not in (1, 3):
        raise ImageWriteError(
            path,
            f"pixels must have 1 or 3 channels, got {colour.shape[2]} "
            "(pass an alpha channel separately with alpha=)",
        )
    if colour.shape[0] == 0 or colour.shape[1] == 0:
        raise ImageWriteError(path, f"image has no pixels (shape {colour.shape[:2]})")
    if alpha is not None:
        alpha_hwc = _as_hwc(path, alpha, "alpha")
        if alpha_hwc.shape != (*colour.shape[:2], 1):
            raise ImageWriteError(
                path,
                f"alpha must be one channel of {colour.shape[0]}x{colour.shape[1]}, "
                f"got shape {alpha_hwc.shape} as (H, W, C)",
            )
        if image_format in ("JPEG", "BMP"):
            raise ImageWriteError(
                path,
                f"{image_format} cannot store an alpha channel; write PNG, WebP or TIFF instead",
            )
    else:
        alpha_hwc = None
    samples = _quantise(path, colour, alpha_hwc, bit_depth)
    encoded = _encode(path, image_format, samples, icc_profile, exif, quality,
                      png_compression)
    return atomic_write_bytes(path, encoded)


def _checked_format(path: Path, bit_depth: int, quality: int, png_compression: int) -> str:
    """The format ``path``'s suffix asks for, once the options fit it."""
    image_format = _FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if image_format is None:
        known = ", ".join(sorted(_FORMATS_BY_SUFFIX))
        raise ImageWriteError(path, f"unsupported file extension {path.suffix!r} (use {known})")
    if bit_depth not in (8, 16):
        raise ImageWriteError(path, f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and image_format not in ("PNG", "TIFF"):
        raise ImageWriteError(path, f"16-bit output is only supported for PNG and TIFF, not "
                                    f"{image_format}")
    if image_format == "AVIF" and not features.check("avif"):
        raise ImageWriteError(path, "this Pillow was built without AVIF support (libavif)")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageWriteError(path, f"quality must be an int from 1 to 100, got {quality!r}")
    if (isinstance(png_compression, bool) or not isinstance(png_compression, int)
            or not 0 <= png_compression <= 9):
        raise ImageWriteError(path, f"png_compression must be an int from 0 to 9, got "
                                    f"{png_compression!r}")
    return image_format


def _as_hwc(path: Path, value: object, name: str) -> np.ndarray:
    """Tensor (C, H, W) / numpy (H, W, C), or either as (H, W) -> numpy (H, W, C): float, or
    uint8 / uint16 samples."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() and value.dtype not in (torch.uint8, torch.uint16):
            raise ImageWriteError(path, f"{name} must be floats in [0, 1] or uint8/uint16 "
                                  f"samples, got {value.dtype}")
        if value.ndim not in (2, 3):
            raise ImageWriteError(
                path, f"{name} must be a (C, H, W) or (H, W) tensor, got shape {tuple(value.shape)}"
            )
        # float64 stays float64 (exact quantisation); half/bfloat16 have no numpy twin
        if value.is_floating_point():
            precision = torch.float64 if value.dtype == torch.float64 else torch.float32
            value = value.detach().to("cpu", precision)
        array = value.detach().cpu().numpy()
        return array[..., None] if array.ndim == 2 else array.transpose(1, 2, 0)
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating) and value.dtype not in (np.uint8,
                                                                               np.uint16):
            raise ImageWriteError(path, f"{name} must be floats in [0, 1] or uint8/uint16 "
                                  f"samples, got {value.dtype}")
        if value.ndim not in (2, 3):
            raise ImageWriteError(
                path, f"{name} must be an (H, W, C) or (H, W) array, got shape {value.shape}"
            )
        return value[..., None] if value.ndim == 2 else value
    raise ImageWriteError(
        path, f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}"
    )


# Rows quantised per step: bounds the float64 temporaries to ~32 MB whatever the image size
# (a 24-megapixel RGB output would otherwise need ~0.6 GB of them).
_QUANTISE_BAND_ELEMENTS = 1 << 22


def _quantise(
    path: Path, colour: np.ndarray, alpha: np.ndarray | None, bit_depth: int
) -> np.ndarray:
    """(H, W, C) colour (+ (H, W, 1) alpha, appended last) -> contiguous uint8/uint16."""
    maxval, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    height, width, channels = colour.shape
    planes = [(colour, slice(0, channels))]
    if alpha is not None:
        planes.append((alpha, slice(channels, channels + 1)))
    out = np.empty((height, width, channels + len(planes) - 1), dtype)
    rows = max(1, _QUANTISE_BAND_ELEMENTS // (width * out.shape[2]))
    for top in range(0, height, rows):
        for source, target in planes:
            if source.dtype == dtype:  # samples of this bit depth already
                out[top : top + rows, :, target] = source[top : top + rows]
                continue
            # float64 so that maxval * x + 0.5 never flips a rounding decision
            band = source[top : top + rows].astype(np.float64)
            if source.dtype in (np.uint8, np.uint16):
                band /= np.iinfo(source.dtype).max
            if not np.isfinite(band).all():
                raise ImageWriteError(path, "pixels contain NaN or infinite values")
            out[top : top + rows, :, target] = np.floor(np.clip(band, 0.0, 1.0) * maxval + 0.5)
    return out


def _encode(
    path: Path,
    image_format: str,
    samples: np.ndarray,
    icc_profile: bytes | None,
    exif: bytes | None,
    quality: int,
    png_compression: int,
) -> bytes:
    """Encode (H, W, channels) uint8/uint16 samples (alpha last) in memory."""
    exif = _with_exif_header(exif)
    if image_format == "TIFF":
        return tiff.encode(samples, icc_profile)
    if samples.dtype == np.uint16 and samples.shape[2] > 1:
        # Pillow can't write these.
        return png16.encode(samples, icc_profile, exif, png_compression)

    if image_format in ("WEBP", "AVIF") and samples.shape[2] <= 2:  # no gray modes
        gray = samples[..., :1]
        samples = np.concatenate([gray, gray, gray, samples[..., 1:]], axis=2)
    # (H, W) for gray, so that uint16 becomes mode I;16; 2/3/4 channels become LA/RGB/RGBA
    image = Image.fromarray(samples[..., 0] if samples.shape[2] == 1 else samples)

    options: dict[str, object] = {}
    if image_format == "PNG":
        options.update(compress_level=png_compression)
    elif image_format == "JPEG":
        options.update(quality=quality, subsampling=0)
    elif image_format == "WEBP":
        # exact: keep colour under fully transparent pixels instead of zeroing it
        options.update(quality=quality, lossless=quality == 100, exact=True)
    elif image_format == "AVIF":
        options.update(quality=quality, subsampling="4:4:4")
    if icc_profile and image_format != "BMP":
        options["icc_profile"] = icc_profile
    if exif and image_format in ("PNG", "JPEG", "WEBP", "AVIF"):
        options["exif"] = exif

    buffer = io.BytesIO()
    try:
        image.save(buffer, format=image_format, **options)
    except (OSError, ValueError) as exc:  # e.g. JPEG larger than 65535 pixels a side
        raise ImageWriteError(path, f"could not encode {image_format}: {exc}") from exc
    return buffer.getvalue()
