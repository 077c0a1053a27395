"""Read images as float tensors without losing bit depth, alpha or colour metadata (writing
them back: :mod:`dynsr.io.image_writer`).

Pillow does the decoding and encoding, except for 16-bit colour PNGs (:mod:`dynsr.io.png16`).

Reading (:func:`read_image`) gives a :class:`LoadedImage` whose ``pixels`` are a float32
``(C, H, W)`` tensor in ``[0, 1]`` (C = 1 for grayscale, 3 for colour) with alpha kept apart.

Supported Pillow modes, and what they become:

=============================  =====================================  =========
file mode                      pixels (+ alpha)                       bit_depth
=============================  =====================================  =========
``1``, ``L``                   1 channel (+ alpha from PNG ``tRNS``)  8
``LA``, ``La``                 1 channel + alpha                      8
``I;16``, ``I;16L/B/N``        1 channel (+ alpha from ``tRNS``)      16
``P``, ``PA``                  RGB (+ alpha), palette expanded        8
``RGB``, ``RGBX``, ``YCbCr``   RGB (+ alpha from PNG ``tRNS``)        8
``RGBA``, ``RGBa``             RGB + alpha (un-premultiplied)         8
``CMYK``                       RGB, naive conversion, ICC dropped     8
16-bit PNG RGB / RGBA / LA     RGB or gray (+ alpha), own decoder     16
=============================  =====================================  =========

Refused as unsupported: ``F`` (float), ``I`` (32-bit or signed integer), ``LAB``, ``HSV``.

Pillow 13 opens a 16-bit RGB(A) or gray+alpha PNG as 8-bit ``RGB``/``RGBA`` (it keeps the
high byte of every sample) and cannot write 16-bit colour PNGs at all, hence the own codec;
it does the same to 16-bit colour TIFF, which tifffile reads and writes instead
(:mod:`dynsr.io.tiff`: 8 and 16 bit, gray / RGB, alpha, ICC). AVIF (8 bit, alpha, ICC,
EXIF) is read and written by Pillow where it was built with libavif
(``PIL.features.check("avif")``).
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dynsr.io import png16, tiff
from dynsr.io.errors import ImageReadError
from dynsr.io.samples import DecodedSamples

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV_VAR",
    "LoadedImage",
    "list_images",
    "load_tensor",
    "read_image",
]

#: Pillow's own hard limit (twice its warning threshold): 178,956,970 pixels, about 13k x 13k.
DEFAULT_MAX_PIXELS = 178_956_970
#: Environment variable replacing DEFAULT_MAX_PIXELS; "0" or "none" means no limit.
MAX_PIXELS_ENV_VAR = "DYNSR_MAX_PIXELS"
#: Lower-case file suffixes that :func:`list_images` picks up and :func:`read_image` expects.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp",
                              ".avif"})

# Only these decoders may run: a file named .png is never handed to, say, a PSD parser.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "AVIF")
_FORMATS_BY_SUFFIX = {
    ".avif": "AVIF",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_ORIENTATION_TAG = 0x0112

# Pillow mode -> mode we convert to before taking the samples.
_GRAY16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_CONVERT_8BIT = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "P": "RGB",
    "PA": "RGBA",
    "RGB": "RGB",
    "RGBX": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
    "YCbCr": "RGB",
    "CMYK": "RGB",
}


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image plus what is needed to write it back faithfully."""

    pixels: torch.Tensor  # float32 (C, H, W) in [0, 1]; C is 1 (gray) or 3 (colour)
    alpha: torch.Tensor | None  # float32 (1, H, W) in [0, 1], or None
    bit_depth: int  # 8 or 16: precision needed to write the samples back losslessly
    mode: str  # the file's Pillow mode ('RGB;16B' etc. for the 16-bit PNGs Pillow truncates)
    icc_profile: bytes | None
    exif: bytes | None  # starts with b"Exif\0\0"; orientation tag removed (already applied)
    path: Path

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])



# --------------------------------------------------------------------------------------------
# Reading


def read_image(
    path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> LoadedImage:
    """Decode a PNG, JPEG, BMP, TIFF, WebP or AVIF file into a :class:`LoadedImage`.

    EXIF orientation is applied to the pixels and dropped from the kept EXIF. ``max_pixels``
    (checked from the header, before any pixel is decoded) guards against decompression
    bombs; ``None`` means no limit. Left at its default, the environment variable
    ``DYNSR_MAX_PIXELS`` may replace it. Every failure is an :class:`ImageReadError`.
    """
    path = Path(path)
    limit = _effective_max_pixels(path, max_pixels)
    _check_is_readable_file(path)
    try:
        file = open(path, "rb")  # closed by the with below
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied (cannot open the file for reading)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot open the file: {exc.strerror or exc}") from exc
    with file:
        png_header = png16.parse_header(file.read(png16.HEADER_SIZE))
        file.seek(0)
        if png_header is not None:
            # Check before Pillow gets the file, so our limit rules even when it is stricter.
            _check_pixel_count(path, png_header.width, png_header.height, limit)
        samples = None
        if png_header is not None and png16.can_decode(png_header):
            samples = _decode_png16(path, file.read())
        elif tiff.is_tiff(file.read(4)):
            file.seek(0)
            samples = _decode_tiff(path, file.read(), limit)
            file.seek(0)
        else:
            file.seek(0)
        if samples is None:
            samples = _decode_with_pillow(path, file, limit)
    return _to_loaded_image(path, samples)


def _decode_tiff(path: Path, data: bytes, limit: int | None) -> DecodedSamples | None:
    try:
        decoded = tiff.decode(data, lambda w, h: _check_pixel_count(path, w, h, limit))
    except ValueError as exc:
        raise ImageReadError(path, str(exc)) from exc
    return decoded  # None: Pillow's case (dynsr.io.tiff)


def load_tensor(
    path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Just the float32 ``(C, H, W)`` pixels of :func:`read_image` (alpha dropped)."""
    return read_image(path, max_pixels=max_pixels).pixels


def _effective_max_pixels(path: Path, max_pixels: int | None) -> int | None:
    if max_pixels != DEFAULT_MAX_PIXELS:  # an explicit argument beats the environment
        if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels <= 0):
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
        return max_pixels
    setting = os.environ.get(MAX_PIXELS_ENV_VAR, "").strip()
    if not setting:
        return DEFAULT_MAX_PIXELS
    if setting.lower() in ("0", "none", "unlimited"):
        return None
    try:
        value = int(setting)
    except ValueError:
        value = 0
    if value <= 0:
        raise ImageReadError(
            path,
            f"invalid {MAX_PIXELS_ENV_VAR}={setting!r}: expected a positive whole number, "
            "or 0/none for no limit",
        )
    return value


def _check_is_readable_file(path: Path) -> None:
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise ImageReadError(path, "file does not exist") from exc
    except PermissionError as exc:
        raise ImageReadError(path, "permission denied (cannot access the file)") from exc
    except OSError as exc:
        raise ImageReadError(path, f"cannot access the file: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(path, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or stream forever.
        raise ImageReadError(path, "not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")


def _check_pixel_count(path: Path, width: int, height: int, limit: int | None) -> None:
    if limit is not None and width * height > limit:
        raise ImageReadError(
            path,
            f"too many pixels: {width}x{height} = {width * height:,} is more than the limit of "
            f"{limit:,} (possible decompression bomb; raise the limit with max_pixels= or "
            f"{MAX_PIXELS_ENV_VAR})",
        )


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_bomb_limit(limit: int | None) -> Iterator[None]:
    """Make our ``limit`` the one that counts while Pillow opens and decodes a file.

    Pillow errors above 2 * ``Image.MAX_IMAGE_PIXELS`` and warns above 1x. Its warning is
    silenced (we already checked); its global limit is lifted only when ours is looser, only
    for this call, and restored afterwards.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        current = Image.MAX_IMAGE_PIXELS
        if current is None or (limit is not None and limit <= 2 * current):
            yield
            return
        with _PILLOW_LIMIT_LOCK:
            original = Image.MAX_IMAGE_PIXELS  # re-read: another thread may have restored it
            Image.MAX_IMAGE_PIXELS = None if limit is None else -(-limit // 2)
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = original


def _decode_with_pillow(path: Path, file: io.BufferedReader,
                        limit: int | None) -> DecodedSamples:
    with _pillow_bomb_limit(limit):
        try:
            image = Image.open(file, formats=_PILLOW_FORMATS)
        except Image.DecompressionBombError as exc:
            raise ImageReadError(path, f"too many pixels: {exc}") from exc
        except Image.UnidentifiedImageError as exc:
            raise ImageReadError(
                path, "not an image, or not a supported format (PNG, JPEG, BMP, TIFF, WebP, "
                "AVIF)"
            ) from exc
        except Exception as exc:  # plugins raise many types on damaged headers
            raise ImageReadError(path, f"corrupt image header: {exc}") from exc
        _check_pixel_count(path, image.width, image.height, limit)
        try:
            # Pillow decodes lazily; force it here so truncation shows up as an error now
            # (ImageFile.LOAD_TRUNCATED_IMAGES is left alone, i.e. False).
            image.load()
        except Exception as exc:  # OSError, SyntaxError, zlib/struct errors...
            raise ImageReadError(path, f"truncated or corrupt image data: {exc}") from exc
    return _samples_from_pillow(path, image)


def _decode_png16(path: Path, data: bytes) -> DecodedSamples:
    try:
        png = png16.decode(data)
    except ValueError as exc:
        raise ImageReadError(path, str(exc)) from exc
    orientation = _orientation_from_exif(png.exif)
    return DecodedSamples(png.samples, png.alpha, 16, png.mode, png.icc_profile, png.exif,
                          orientation)


def _samples_from_pillow(path: Path, image: Image.Image) -> DecodedSamples:
    mode = image.mode
    icc_profile = image.info.get("icc_profile") or None
    exif = _with_exif_header(image.info.get("exif"))
    orientation = _orientation_of(image)
    transparency = image.info.get("transparency")

    if mode in _GRAY16_MODES:
        gray = np.asarray(image).astype(np.uint16)[..., None]
        alpha = None
        if isinstance(transparency, int):  # PNG tRNS: one gray value means transparent
            alpha = np.where(gray == transparency, 0, 65535).astype(np.uint16)
        return DecodedSamples(gray, alpha, 16, mode, icc_profile, exif, orientation)

    target = _CONVERT_8BIT.get(mode)
    if target is None:
        raise ImageReadError(path, f"unsupported image mode {mode!r} ({_mode_hint(mode)})")
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, 8)  # BitsPerSample
        if max(bits if isinstance(bits, tuple) else (bits,)) > 8:  # dynsr.io.tiff's refusal
            raise ImageReadError(path, f"unsupported image mode: 16-bit TIFF ({mode}) of a "
                                 "kind Pillow keeps only 8 of the 16 bits of")
    if transparency is not None and target in ("L", "RGB"):
        target += "A"  # tRNS / palette transparency becomes a real alpha channel
    if mode == "CMYK":
        icc_profile = None  # a CMYK profile does not describe the converted RGB pixels
    if image.mode != target:
        image = image.convert(target)
    samples = np.asarray(image)
    if samples.ndim == 2:
        samples = samples[..., None]
    if target.endswith("A"):
        colour, alpha = samples[..., :-1], samples[..., -1:]
    else:
        colour, alpha = samples, None
    return DecodedSamples(colour, alpha, 8, mode, icc_profile, exif, orientation)


def _mode_hint(mode: str) -> str:
    if mode == "F":
        return "32-bit float samples are not supported"
    if mode == "I":
        return "32-bit or signed integer samples are not supported; 16-bit unsigned is"
    return "supported: 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr and 16-bit gray/RGB/RGBA"


def _orientation_of(image: Image.Image) -> int:
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # broken EXIF must not make the pixels unreadable
        return 1
    return _valid_orientation(orientation)


def _orientation_from_exif(exif: bytes | None) -> int:
    if exif is None:
        return 1
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        orientation = parsed.get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return _valid_orientation(orientation)


def _valid_orientation(value: object) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _with_exif_header(exif: bytes | None) -> bytes | None:
    # Pillow gives JPEG/PNG EXIF with the b"Exif\0\0" header and WebP's without; unify.
    if not exif:
        return None
    return exif if exif.startswith(png16.EXIF_HEADER) else png16.EXIF_HEADER + exif


def _without_orientation(exif: bytes | None) -> bytes | None:
    if exif is None:
        return None
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        if _ORIENTATION_TAG not in parsed:
            return exif
        del parsed[_ORIENTATION_TAG]
        return parsed.tobytes()
    except Exception:  # unparsable EXIF is kept byte for byte
        return exif


def _apply_orientation(samples: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, C) samples stored with EXIF ``orientation`` into display orientation."""
    if orientation == 2:
        return samples[:, ::-1]
    if orientation == 3:
        return samples[::-1, ::-1]
    if orientation == 4:
        return samples[::-1]
    if orientation == 5:
        return samples.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(samples, -1)
    if orientation == 7:
        return samples[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(samples, 1)
    return samples


def _to_loaded_image(path: Path, samples: DecodedSamples) -> LoadedImage:
    scale = np.float32(65535 if samples.bit_depth == 16 else 255)

    def to_tensor(hwc: np.ndarray) -> torch.Tensor:
        oriented = _apply_orientation(hwc, samples.orientation)
        chw = np.ascontiguousarray(oriented.transpose(2, 0, 1))
        return torch.from_numpy(chw.astype(np.float32) / scale)

    return LoadedImage(
        pixels=to_tensor(samples.colour),
        alpha=None if samples.alpha is None else to_tensor(samples.alpha),
        bit_depth=samples.bit_depth,
        mode=samples.mode,
        icc_profile=samples.icc_profile,
        exif=_without_orientation(samples.exif),
        path=path,
    )


# --------------------------------------------------------------------------------------------
# Listing


def list_images(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], recursive: bool = False
) -> list[Path]:
    """Expand files and folders into image files.

    Files are kept as given (in order, whatever their suffix: the reader will judge them).
    Folders contribute their files with a suffix in :data:`IMAGE_EXTENSIONS` (any case),
    sorted, searching sub-folders when ``recursive``; hidden names (starting with ".",
    e.g. macOS "._x.png" or our own temporary files) are skipped. Duplicates are dropped.
    A path that does not exist raises :class:`ImageReadError`.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, None] = {}  # dict keeps first-seen order and drops duplicates
    for given in map(Path, paths):
        if given.is_dir():
            for image_path in _images_in_folder(given, recursive):
                found.setdefault(image_path)
        elif given.exists():
            found.setdefault(given)
        else:
            raise ImageReadError(given, "file or folder does not exist")
    return list(found)


def _images_in_folder(folder: Path, recursive: bool) -> list[Path]:
    images = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")] if recursive else []
        images.extend(
            Path(root, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(images)
