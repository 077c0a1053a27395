"""Codec for 16-bit colour PNGs (RGB, RGBA, gray+alpha), which Pillow reads as 8-bit only.

Pure bytes <-> numpy: no files, no Pillow. Decoding failures are ``ValueError`` whose text is
the one-line reason. 16-bit gray PNGs are left to Pillow, whose ``I;16`` mode is exact.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "EXIF_HEADER",
    "HEADER_SIZE",
    "DecodedPng16",
    "PngHeader",
    "can_decode",
    "decode",
    "encode",
    "parse_header",
]

#: Bytes needed by :func:`parse_header`: the PNG signature plus the IHDR chunk.
HEADER_SIZE = 33
#: Prefix of EXIF blobs as Pillow passes them around; a PNG eXIf chunk stores what follows it.
EXIF_HEADER = b"Exif\x00\x00"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CORRUPT = "truncated or corrupt image data"
# colour type -> samples per pixel, and the mode name reported for it
_CHANNELS = {2: 3, 4: 2, 6: 4}
_COLOUR_TYPES = {channels: colour_type for colour_type, channels in _CHANNELS.items()}
_MODES = {2: "RGB;16B", 4: "LA;16B", 6: "RGBA;16B"}
# Adam7 passes: (x0, y0, dx, dy)
_ADAM7_PASSES = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)


class PngHeader(NamedTuple):
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int


@dataclass(frozen=True, eq=False)
class DecodedPng16:
    """What :func:`decode` returns."""

    samples: np.ndarray  # uint16 (H, W, 1 or 3): gray or RGB, alpha split off
    alpha: np.ndarray | None  # uint16 (H, W, 1); also made from a tRNS colour key
    mode: str  # "RGB;16B", "LA;16B" or "RGBA;16B"
    icc_profile: bytes | None
    exif: bytes | None  # with the EXIF_HEADER prefix, as Pillow gives it


def parse_header(head: bytes) -> PngHeader | None:
    """The IHDR fields of any PNG from its first :data:`HEADER_SIZE` bytes; None if not a PNG."""
    if len(head) < HEADER_SIZE or not head.startswith(_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PngHeader(width, height, depth, colour_type, interlace)


def can_decode(header: PngHeader) -> bool:
    """True for the PNGs this codec is for: 16-bit RGB, RGBA and gray+alpha."""
    return header.bit_depth == 16 and header.colour_type in _CHANNELS


def decode(data: bytes) -> DecodedPng16:
    """Decode a whole 16-bit colour PNG file; raises ``ValueError`` with the reason."""
    header = parse_header(data[:HEADER_SIZE])
    if header is None or not can_decode(header):
        raise ValueError("not a 16-bit RGB, RGBA or gray+alpha PNG")
    width, height, _, colour_type, interlace = header
    if width == 0 or height == 0 or interlace not in (0, 1):
        raise ValueError("corrupt image header: invalid PNG IHDR")
    bytes_per_pixel = 2 * _CHANNELS[colour_type]

    idat: list[memoryview] = []
    icc_profile = exif = transparency = None
    for kind, body in _chunks(memoryview(data)):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"iCCP":
            # profile name, NUL, compression method (0 = zlib), compressed profile
            chunk = bytes(body)
            with contextlib.suppress(zlib.error, ValueError):
                icc_profile = zlib.decompress(chunk[chunk.index(b"\0") + 2 :])
        elif kind == b"eXIf":
            exif = EXIF_HEADER + bytes(body)
        elif kind == b"tRNS":
            transparency = bytes(body)
        elif kind == b"IEND":
            break

    passes = _ADAM7_PASSES if interlace else ((0, 0, 1, 1),)
    sizes = [_pass_size(width, height, p) for p in passes]
    expected = sum(h * (1 + w * bytes_per_pixel) for w, h in sizes)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise ValueError(f"{_CORRUPT}: {exc}") from exc
    if len(raw) < expected:
        raise ValueError(f"{_CORRUPT}: image data ends early")

    image_bytes = np.empty((height, width, bytes_per_pixel), np.uint8)
    offset = 0
    for (x0, y0, dx, dy), (pass_width, pass_height) in zip(passes, sizes, strict=True):
        if pass_width == 0 or pass_height == 0:
            continue  # empty passes have no scanlines at all, not even filter bytes
        count = pass_height * (1 + pass_width * bytes_per_pixel)
        scanlines = np.frombuffer(raw, np.uint8, count, offset).reshape(pass_height, -1)
        offset += count
        try:
            unfiltered = _unfilter(scanlines, bytes_per_pixel)
        except ValueError as exc:
            raise ValueError(f"{_CORRUPT}: {exc}") from exc
        image_bytes[y0::dy, x0::dx] = unfiltered
    samples = image_bytes.view(">u2").astype(np.uint16)  # PNG stores big-endian

    alpha = None
    if colour_type in (4, 6):
        samples, alpha = samples[..., :-1], samples[..., -1:]
    elif transparency is not None and len(transparency) == 6:  # one RGB colour is see-through
        key = np.frombuffer(transparency, ">u2")
        alpha = np.where((samples == key).all(axis=2, keepdims=True), 0, 65535).astype(np.uint16)
    return DecodedPng16(samples, alpha, _MODES[colour_type], icc_profile, exif)


def encode(samples: np.ndarray, icc_profile: bytes | None, exif: bytes | None,
           level: int = 6) -> bytes:
    """16-bit gray+alpha / RGB / RGBA PNG from (H, W, 2|3|4) uint16 samples (alpha last);
    ``level``: zlib's compression level 0-9."""
    height, width, channels = samples.shape
    colour_type = _COLOUR_TYPES[channels]
    rows = np.ascontiguousarray(samples, dtype=">u2").view(np.uint8).reshape(height, -1)
    # Filter "Up" on every row: one vectorised subtraction, and ~15-20% smaller than no
    # filter on photographs. Row 0 has a zero row above, so it is stored as is.
    scanlines = np.empty((height, 1 + rows.shape[1]), np.uint8)
    scanlines[:, 0] = 2
    scanlines[0, 1:] = rows[0]
    scanlines[1:, 1:] = rows[1:] - rows[:-1]  # uint8: wraps mod 256

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    chunks = [_SIGNATURE, _chunk(b"IHDR", ihdr)]
    if icc_profile:
        chunks.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_chunk(b"eXIf", exif.removeprefix(EXIF_HEADER)))
    compressed = zlib.compress(scanlines.tobytes(), level)
    step = 1 << 23  # IDAT chunks of 8 MiB: well under PNG's 2**31 - 1 chunk limit
    chunks.extend(
        _chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step)
    )
    chunks.append(_chunk(b"IEND", b""))
    return b"".join(chunks)


def _chunks(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of every chunk after the signature, checking lengths and CRCs."""
    pos = len(_SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{_CORRUPT}: PNG chunk cut short")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise ValueError(f"{_CORRUPT}: PNG chunk cut short")
        body = data[pos + 8 : end - 4]
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if _crc(kind, body) != crc:
            raise ValueError(f"{_CORRUPT}: bad CRC in {kind.decode('latin-1')} chunk")
        yield kind, body
        pos = end


def _crc(kind: bytes, body: bytes | memoryview) -> int:
    return zlib.crc32(body, zlib.crc32(kind))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", _crc(kind, body))


def _pass_size(
    width: int, height: int, interlace_pass: tuple[int, int, int, int]
) -> tuple[int, int]:
    x0, y0, dx, dy = interlace_pass
    return max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy))


def _unfilter(scanlines: np.ndarray, bytes_per_pixel: int) -> np.ndarray:
    """Undo PNG row filters: (rows, 1 + width * bpp) uint8 -> (rows, width, bpp) uint8.

    All arithmetic is on uint8, i.e. modulo 256 as the PNG spec requires.
    """
    rows = scanlines.shape[0]
    filters = scanlines[:, 0]
    highest_filter = int(filters.max(initial=0))
    if highest_filter > 4:
        raise ValueError(f"unknown PNG filter type {highest_filter}")
    filtered = scanlines[:, 1:].reshape(rows, -1, bytes_per_pixel)
    width = filtered.shape[1]
    # One zero row above and one zero column to the left: the spec's "outside" neighbours.
    out = np.zeros((rows + 1, width + 1, bytes_per_pixel), np.uint8)

    if highest_filter <= 2:
        # None / Sub / Up only depend on one direction: whole rows at a time.
        for y in range(rows):
            line = filtered[y]
            if filters[y] == 1:
                line = np.cumsum(line, axis=0, dtype=np.uint8)  # wraps mod 256
            elif filters[y] == 2:
                line = line + out[y, 1:]
            out[y + 1, 1:] = line
        return out[1:, 1:]

    # Average and Paeth use the left AND upper neighbours, so sweep anti-diagonals: every
    # pixel on diagonal x + y = d only needs diagonals d - 1 and d - 2, already done.
    row_filters = filters[:, None]
    for diagonal in range(rows + width - 1):
        ys = np.arange(max(0, diagonal - width + 1), min(rows, diagonal + 1))
        xs = diagonal - ys
        left = out[ys + 1, xs]
        up = out[ys, xs + 1]
        up_left = out[ys, xs]
        kind = row_filters[ys]
        average = ((left.astype(np.uint16) + up) >> 1).astype(np.uint8)
        prediction = np.select(
            [kind == 1, kind == 2, kind == 3, kind == 4],
            [left, up, average, _paeth(left, up, up_left)],
            default=0,
        ).astype(np.uint8)
        out[ys + 1, xs + 1] = filtered[ys, xs] + prediction
    return out[1:, 1:]


def _paeth(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    a, b, c = (v.astype(np.int16) for v in (left, up, up_left))
    distance_a, distance_b, distance_c = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    return np.where(
        (distance_a <= distance_b) & (distance_a <= distance_c),
        left,
        np.where(distance_b <= distance_c, up, up_left),
    )
