"""Tests for dynsr.io: exact round trips, metadata, EXIF orientation, errors, atomic writes."""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageFile, ImageOps
from skimage import data

import dynsr.io.image as image_module
import dynsr.io.image_writer as image_writer
from dynsr.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    atomic_write_text,
    list_images,
    load_tensor,
    read_image,
    write_image,
)

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------ helpers


def to_samples(tensor: torch.Tensor, bit_depth: int) -> np.ndarray:
    """Loaded (C, H, W) floats back to integer (H, W, C) samples."""
    maxval = 65535 if bit_depth == 16 else 255
    hwc = tensor.permute(1, 2, 0).double().numpy()
    return np.floor(hwc * maxval + 0.5).astype(np.int64)


def random_uint16(*shape: int) -> np.ndarray:
    values = RNG.integers(0, 65536, shape).astype(np.uint16)
    values.flat[:4] = [0, 65535, 1, 257]  # extremes and low-byte-only values always present
    return values


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def reference_png16(
    samples: np.ndarray,
    colour_type: int,
    row_filters: np.ndarray | None = None,
    interlace: bool = False,
    extra_chunks: bytes = b"",
) -> bytes:
    """An independent 16-bit PNG encoder using any of the five filters, straight from the spec.

    Each scanline is filtered with ``row_filters[i % len]``; Adam7 if ``interlace``.
    """
    height, width, channels = samples.shape
    bpp = 2 * channels
    filters = np.array([0, 1, 2, 3, 4]) if row_filters is None else row_filters
    passes = (
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
        + [(0, 1, 1, 2)]
        if interlace
        else [(0, 0, 1, 1)]
    )
    stream = b""
    line_number = 0
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        x = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1).astype(np.int32)
        a = np.zeros_like(x)
        a[:, bpp:] = x[:, :-bpp]
        b = np.zeros_like(x)
        b[1:] = x[:-1]
        c = np.zeros_like(x)
        c[1:, bpp:] = x[:-1, :-bpp]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        predictions = [np.zeros_like(x), a, b, (a + b) // 2, paeth]
        for row in range(x.shape[0]):
            kind = int(filters[line_number % len(filters)])
            line_number += 1
            filtered = (x[row] - predictions[kind][row]) % 256
            stream += bytes([kind]) + filtered.astype(np.uint8).tobytes()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra_chunks
        + png_chunk(b"IDAT", zlib.compress(stream))
        + png_chunk(b"IEND", b"")
    )


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "dynsr-test"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    return exif.tobytes()


def folder_listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


# ---------------------------------------------------------------------------- exact round trips


def test_png8_rgb_round_trip_is_exact(tmp_path: Path, astronaut: np.ndarray) -> None:
    source = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255
    target = write_image(tmp_path / "a.png", source)
    loaded = read_image(target)
    assert isinstance(loaded, LoadedImage)
    assert loaded.pixels.dtype == torch.float32 and loaded.pixels.shape == (3, 512, 512)
    assert loaded.bit_depth == 8 and loaded.mode == "RGB" and loaded.alpha is None
    assert loaded.path == target
    assert torch.equal(loaded.pixels, source)
    assert np.array_equal(np.asarray(Image.open(target)), astronaut)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_compression_level_changes_size_not_samples(tmp_path: Path, astronaut: np.ndarray,
                                                        bit_depth: int) -> None:
    sizes = {}
    for level in (0, 3, 9):
        target = write_image(tmp_path / f"l{level}.png", astronaut, bit_depth=bit_depth,
                             png_compression=level)
        assert np.array_equal(np.asarray(read_image(target).pixels.permute(1, 2, 0) * 255
                                         + 0.5).astype(np.uint8), astronaut)
        sizes[level] = target.stat().st_size
    assert sizes[0] > sizes[3] > sizes[9]
    write_image(tmp_path / "default.png", astronaut, bit_depth=bit_depth)
    assert (tmp_path / "default.png").read_bytes() == (tmp_path / "l3.png").read_bytes()
    with pytest.raises(ImageWriteError, match="png_compression must be an int from 0 to 9"):
        write_image(tmp_path / "bad.png", astronaut, png_compression=10)


def test_png16_gray_round_trip_is_exact(tmp_path: Path) -> None:
    values = np.array([[0, 1, 257, 65535, 12345], [255, 256, 32767, 32768, 65534]], np.uint16)
    write_image(tmp_path / "g.png", values / 65535.0, bit_depth=16)
    assert Image.open(tmp_path / "g.png").mode == "I;16"  # written through Pillow
    loaded = read_image(tmp_path / "g.png")
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (1, 2, 5)
    assert np.array_equal(to_samples(loaded.pixels, 16)[..., 0], values)


def test_dark_png16_stays_16_bit(tmp_path: Path) -> None:
    dark = np.array([[0, 1, 2, 200, 255]], np.uint16)  # every value fits in 8 bits
    Image.fromarray(dark).save(tmp_path / "dark.png")
    loaded = read_image(tmp_path / "dark.png")
    assert loaded.bit_depth == 16 and loaded.mode == "I;16"
    assert np.array_equal(to_samples(loaded.pixels, 16)[..., 0], dark)
    assert float(loaded.pixels.max()) == pytest.approx(255 / 65535)


@pytest.mark.parametrize("channels", [1, 3])
def test_png16_with_alpha_and_rgb_round_trip_exactly(tmp_path: Path, channels: int) -> None:
    colour = random_uint16(23, 31, channels)
    alpha = random_uint16(23, 31, 1)
    icc = srgb_profile()
    target = tmp_path / "x.png"
    write_image(target, colour / 65535.0, alpha=alpha / 65535.0, bit_depth=16, icc_profile=icc)
    loaded = read_image(target)
    assert loaded.bit_depth == 16
    assert loaded.mode == ("LA;16B" if channels == 1 else "RGBA;16B")
    assert loaded.pixels.shape == (channels, 23, 31) and loaded.alpha is not None
    assert np.array_equal(to_samples(loaded.pixels, 16), colour)
    assert np.array_equal(to_samples(loaded.alpha, 16), alpha)
    assert loaded.icc_profile == icc


def test_png16_rgb_written_file_is_valid_for_pillow(tmp_path: Path) -> None:
    # Pillow decodes our file independently (CRC, zlib, filters) but keeps only the high byte.
    colour = random_uint16(40, 17, 3)
    write_image(
        tmp_path / "c.png", torch.from_numpy(colour / 65535.0).permute(2, 0, 1), bit_depth=16
    )
    loaded = read_image(tmp_path / "c.png")
    assert loaded.mode == "RGB;16B" and loaded.alpha is None
    assert np.array_equal(to_samples(loaded.pixels, 16), colour)
    with Image.open(tmp_path / "c.png") as pillow_view:
        assert pillow_view.size == (17, 40)
        assert np.array_equal(np.asarray(pillow_view), colour >> 8)


# rows filtered only with None/Sub/Up take the row-at-a-time path; Average/Paeth the wavefront
@pytest.mark.parametrize("filters", [(0, 1, 2, 1), (0, 1, 2, 3, 4, 4, 3)])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("colour_type,channels", [(2, 3), (4, 2), (6, 4)])
def test_png16_reader_matches_independent_encoder(
    tmp_path: Path, colour_type: int, channels: int, interlace: bool, filters: tuple[int, ...]
) -> None:
    samples = random_uint16(19, 13, channels)
    # smooth ramps too, where Average/Paeth predictions differ from plain neighbours
    samples[10:] = (np.arange(13)[None, :, None] * 5000 + np.arange(9)[:, None, None] * 77)[
        ..., :1
    ].astype(np.uint16)
    path = tmp_path / "ref.png"
    path.write_bytes(reference_png16(samples, colour_type, np.array(filters), interlace))
    loaded = read_image(path)
    assert loaded.bit_depth == 16
    got = to_samples(loaded.pixels, 16)
    if channels in (2, 4):
        got = np.concatenate([got, to_samples(loaded.alpha, 16)], axis=2)
    assert np.array_equal(got, samples)
    if colour_type in (2, 6):  # Pillow reads the same file as the high bytes
        assert np.array_equal(np.asarray(Image.open(path)), samples >> 8)


def test_png16_rgb_transparent_colour_becomes_alpha(tmp_path: Path) -> None:
    samples = random_uint16(4, 5, 3)
    key = samples[1, 2]
    trns = png_chunk(b"tRNS", key.astype(">u2").tobytes())
    path = tmp_path / "trns.png"
    path.write_bytes(reference_png16(samples, 2, extra_chunks=trns))
    loaded = read_image(path)
    assert loaded.alpha is not None
    expected = np.where((samples == key).all(axis=2), 0, 65535)
    assert np.array_equal(to_samples(loaded.alpha, 16)[..., 0], expected)


def test_wavefront_unfilter_is_fast_enough(tmp_path: Path) -> None:
    samples = random_uint16(256, 256, 3)
    path = tmp_path / "paeth.png"
    path.write_bytes(reference_png16(samples, 2, np.array([4, 3])))
    assert np.array_equal(to_samples(read_image(path).pixels, 16), samples)


# ------------------------------------------------------------------------ modes and formats


def test_grayscale_stays_one_channel(tmp_path: Path) -> None:
    camera = data.camera()
    Image.fromarray(camera).save(tmp_path / "camera.png")
    loaded = read_image(tmp_path / "camera.png")
    assert loaded.pixels.shape == (1, *camera.shape) and loaded.bit_depth == 8
    assert np.array_equal(to_samples(loaded.pixels, 8)[..., 0], camera)
    assert load_tensor(tmp_path / "camera.png").shape == (1, *camera.shape)


def test_one_bit_image_is_one_channel_of_zeros_and_ones(tmp_path: Path) -> None:
    bits = data.camera()[::8, ::8] > 128
    Image.fromarray(bits).save(tmp_path / "bits.png")
    loaded = read_image(tmp_path / "bits.png")
    assert loaded.mode == "1" and loaded.pixels.shape == (1, *bits.shape)
    assert torch.equal(loaded.pixels[0], torch.from_numpy(bits).float())


def test_rgba_alpha_is_returned_separately(tmp_path: Path, astronaut: np.ndarray) -> None:
    alpha = RNG.integers(0, 256, astronaut.shape[:2]).astype(np.uint8)
    Image.fromarray(np.dstack([astronaut, alpha])).save(tmp_path / "rgba.png")
    loaded = read_image(tmp_path / "rgba.png")
    assert loaded.mode == "RGBA" and loaded.pixels.shape == (3, 512, 512)
    assert loaded.alpha is not None and loaded.alpha.shape == (1, 512, 512)
    assert np.array_equal(to_samples(loaded.pixels, 8), astronaut)
    assert np.array_equal(to_samples(loaded.alpha, 8)[..., 0], alpha)
    tensor = load_tensor(tmp_path / "rgba.png")  # alpha dropped
    assert tensor.shape == (3, 512, 512)


def test_palette_images_become_rgb_or_rgba(tmp_path: Path) -> None:
    coffee = Image.fromarray(data.coffee()[::4, ::4])
    palette = coffee.quantize(colors=32)
    palette.save(tmp_path / "p.png")
    loaded = read_image(tmp_path / "p.png")
    assert loaded.mode == "P" and loaded.alpha is None and loaded.pixels.shape[0] == 3
    assert np.array_equal(to_samples(loaded.pixels, 8), np.asarray(palette.convert("RGB")))

    palette.save(tmp_path / "pt.png", transparency=3)  # palette entry 3 is see-through
    loaded = read_image(tmp_path / "pt.png")
    assert loaded.alpha is not None
    expected_alpha = np.where(np.asarray(palette) == 3, 0, 255)
    assert np.array_equal(to_samples(loaded.alpha, 8)[..., 0], expected_alpha)


def test_gray_png_with_transparent_value_gets_alpha(tmp_path: Path) -> None:
    gray = data.camera()[::16, ::16]
    Image.fromarray(gray).save(tmp_path / "t.png", transparency=int(gray[0, 0]))
    loaded = read_image(tmp_path / "t.png")
    assert loaded.pixels.shape[0] == 1 and loaded.alpha is not None
    assert np.array_equal(to_samples(loaded.alpha, 8)[..., 0], np.where(gray == gray[0, 0], 0, 255))


@pytest.mark.parametrize("name", ["la.png", "la.tif"])
def test_gray_with_alpha_round_trips_8_bit(tmp_path: Path, name: str) -> None:
    gray = torch.from_numpy(data.camera()[:40, :50]).float()[None] / 255
    alpha = torch.flip(gray, dims=[2])
    write_image(tmp_path / name, gray, alpha=alpha)
    loaded = read_image(tmp_path / name)
    assert loaded.mode == "LA" and loaded.bit_depth == 8
    assert torch.equal(loaded.pixels, gray) and torch.equal(loaded.alpha, alpha)


def test_lossless_formats_round_trip_exactly(tmp_path: Path, astronaut: np.ndarray) -> None:
    source = torch.from_numpy(astronaut[:100, :120]).permute(2, 0, 1).float() / 255
    alpha = torch.rand(1, 100, 120)
    for name, with_alpha in [
        ("a.bmp", False),
        ("a.tif", True),
        ("a.tiff", False),
        ("a.webp", True),
        ("a.png", True),
    ]:
        target = tmp_path / name
        write_image(target, source, alpha=alpha if with_alpha else None, quality=100)
        loaded = read_image(target)
        assert loaded.bit_depth == 8
        assert torch.equal(loaded.pixels, source), name
        if with_alpha:
            assert np.array_equal(to_samples(loaded.alpha, 8), to_samples(alpha, 8)), name


def test_lossy_formats_are_close(tmp_path: Path, astronaut: np.ndarray) -> None:
    source = torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255
    for name in ("a.jpg", "a.jpeg", "a.webp"):
        write_image(tmp_path / name, source, quality=90)
        loaded = read_image(tmp_path / name)
        assert loaded.pixels.shape == (3, 512, 512)
        mse = float(((loaded.pixels - source) ** 2).mean())
        assert 10 * np.log10(1 / mse) > 30, name
    assert Image.open(tmp_path / "a.jpg").format == "JPEG"
    assert Image.open(tmp_path / "a.webp").format == "WEBP"


def test_gray_webp_and_jpeg(tmp_path: Path) -> None:
    gray = torch.from_numpy(data.camera()[:64, :64]).float()[None] / 255
    write_image(tmp_path / "g.webp", gray, quality=100)
    assert torch.equal(read_image(tmp_path / "g.webp").pixels, gray.expand(3, -1, -1))
    write_image(tmp_path / "g.jpg", gray)
    assert read_image(tmp_path / "g.jpg").pixels.shape == (1, 64, 64)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.fromarray(data.coffee()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    loaded = read_image(tmp_path / "cmyk.jpg")
    assert loaded.mode == "CMYK" and loaded.pixels.shape == (3, 400, 600)
    assert loaded.icc_profile is None


def test_numpy_input_and_quantisation_rule(tmp_path: Path) -> None:
    values = np.array([[-0.2, 0.0, 1.0, 1.7, 0.5, 0.3]], np.float64)
    write_image(tmp_path / "q.png", values)
    written = np.asarray(Image.open(tmp_path / "q.png"))[0]
    assert written.tolist() == [0, 0, 255, 255, 128, 77]  # clamp, then floor(x*255 + 0.5)
    # values that land exactly on .5 go up (MATLAB im2uint8), never to the even neighbour
    halves = np.array([k + 0.5 for k in range(255) if (k + 0.5) / 255 * 255 == k + 0.5])
    halves = halves[(np.floor(halves) % 2 == 0)]  # where round-half-even would go down
    assert halves.size > 0
    write_image(tmp_path / "h.png", (halves / 255)[None, :])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "h.png"))[0], np.floor(halves) + 1)
    random = RNG.random((9, 11, 3))
    write_image(tmp_path / "r.png", random)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), np.floor(random * 255 + 0.5))


# ------------------------------------------------------------------------------- metadata


def test_icc_profile_kept_through_round_trips(tmp_path: Path) -> None:
    icc = srgb_profile()
    pixels = torch.rand(3, 16, 16)
    for name, depth in [("i.png", 8), ("i16.png", 16), ("i.jpg", 8), ("i.webp", 8), ("i.tif", 8)]:
        write_image(tmp_path / name, pixels, bit_depth=depth, icc_profile=icc)
        first = read_image(tmp_path / name)
        assert first.icc_profile == icc, name
        write_image(tmp_path / f"again_{name}", first.pixels, bit_depth=depth, **_meta(first))
        assert read_image(tmp_path / f"again_{name}").icc_profile == icc, name
    assert read_image(tmp_path / "i.png").exif is None


def _meta(image: LoadedImage) -> dict:
    return {"icc_profile": image.icc_profile, "exif": image.exif}


@pytest.mark.parametrize("name", ["e.png", "e16.png", "e.jpg", "e.webp"])
def test_exif_kept_through_round_trip(tmp_path: Path, name: str) -> None:
    depth = 16 if "16" in name else 8
    write_image(tmp_path / name, torch.rand(3, 8, 8), bit_depth=depth, exif=exif_bytes())
    loaded = read_image(tmp_path / name)
    assert loaded.exif is not None and loaded.exif.startswith(b"Exif\x00\x00")
    parsed = Image.Exif()
    parsed.load(loaded.exif)
    assert parsed[0x010F] == "dynsr-test"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    stored = data.chelsea()[:30:, :50]  # non-square, so rotations change the shape
    Image.fromarray(stored).save(tmp_path / "o.png", exif=exif_bytes(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    loaded = read_image(tmp_path / "o.png")
    assert np.array_equal(to_samples(loaded.pixels, 8), expected)
    parsed = Image.Exif()
    parsed.load(loaded.exif)
    assert 0x0112 not in parsed and parsed[0x010F] == "dynsr-test"

    # the same through the 16-bit decoder (and a separate alpha channel)
    wide = stored.astype(np.uint16) * 257
    write_image(
        tmp_path / "o16.png",
        wide / 65535.0,
        alpha=wide[..., :1] / 65535.0,
        bit_depth=16,
        exif=exif_bytes(orientation),
    )
    loaded16 = read_image(tmp_path / "o16.png")
    assert np.array_equal(to_samples(loaded16.pixels, 16), expected.astype(np.int64) * 257)
    assert np.array_equal(to_samples(loaded16.alpha, 16), expected[..., :1].astype(np.int64) * 257)


def test_jpeg_exif_orientation_6_is_rotated(tmp_path: Path) -> None:
    stored = data.coffee()[::2, ::2]  # 200 x 300
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=100, subsampling=0, exif=exif_bytes(6))
    loaded = read_image(tmp_path / "r.jpg")
    assert loaded.pixels.shape == (3, 300, 200)
    difference = to_samples(loaded.pixels, 8) - np.rot90(stored, -1)  # 6: turn 90 deg clockwise
    assert np.abs(difference).mean() < 2
    parsed = Image.Exif()
    parsed.load(loaded.exif)
    assert 0x0112 not in parsed


# ---------------------------------------------------------------------------- bad input


def assert_read_fails(path: Path, reason: str, **kwargs) -> ImageReadError:
    folder = path.parent
    before = folder_listing(folder)
    with pytest.raises(ImageReadError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert reason in message, message
    assert isinstance(caught.value, OSError)
    assert folder_listing(folder) == before  # nothing written
    return caught.value


def test_missing_file(tmp_path: Path) -> None:
    assert_read_fails(tmp_path / "missing.png", "file does not exist")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    assert_read_fails(tmp_path / "folder.png", "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    assert_read_fails(tmp_path / "empty.png", "file is empty (0 bytes)")


def test_text_file_named_png(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("this is not an image\n" * 20)
    assert_read_fails(tmp_path / "notes.png", "not an image")


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg", "cut16.png"])
def test_truncated_files(tmp_path: Path, astronaut: np.ndarray, name: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    full = tmp_path / f"full_{name}"
    depth = 16 if "16" in name else 8
    write_image(full, torch.from_numpy(astronaut).permute(2, 0, 1) / 255.0, bit_depth=depth)
    blob = full.read_bytes()
    (tmp_path / name).write_bytes(blob[: len(blob) // 2])
    assert_read_fails(tmp_path / name, "truncated or corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png16_checksum(tmp_path: Path) -> None:
    write_image(tmp_path / "ok.png", torch.rand(3, 8, 8), bit_depth=16)
    blob = bytearray((tmp_path / "ok.png").read_bytes())
    blob[-20] ^= 0xFF  # inside the last IDAT's data
    (tmp_path / "bad.png").write_bytes(bytes(blob))
    assert_read_fails(tmp_path / "bad.png", "bad CRC in IDAT chunk")


def tiny_png_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + png_chunk(b"IEND", b"")
    )


def test_decompression_bomb_png_header(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(tiny_png_claiming(30000, 30000))
    error = assert_read_fails(tmp_path / "bomb.png", "too many pixels: 30000x30000")
    assert f"{DEFAULT_MAX_PIXELS:,}" in str(error)


def test_decompression_bomb_caught_from_pillow(tmp_path: Path) -> None:
    # A BMP header claiming 30000 x 30000: Pillow's own DecompressionBombError fires first.
    header = struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = b"\0" * 64
    bmp = b"BM" + struct.pack("<IHHI", 14 + len(header) + len(body), 0, 0, 54) + header + body
    (tmp_path / "bomb.bmp").write_bytes(bmp)
    assert_read_fails(tmp_path / "bomb.bmp", "too many pixels")


def test_small_pixel_limit_by_argument_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(tmp_path / "s.png", torch.rand(3, 20, 30))
    write_image(tmp_path / "s.jpg", torch.rand(3, 20, 30))
    assert_read_fails(tmp_path / "s.png", "too many pixels: 30x20 = 600", max_pixels=599)
    assert_read_fails(tmp_path / "s.jpg", "too many pixels: 30x20 = 600", max_pixels=599)
    read_image(tmp_path / "s.jpg", max_pixels=600)

    monkeypatch.setenv("DYNSR_MAX_PIXELS", "500")
    assert_read_fails(tmp_path / "s.png", "more than the limit of 500")
    read_image(tmp_path / "s.png", max_pixels=None)  # an explicit argument wins
    monkeypatch.setenv("DYNSR_MAX_PIXELS", "none")
    read_image(tmp_path / "s.png")
    monkeypatch.setenv("DYNSR_MAX_PIXELS", "lots")
    assert_read_fails(tmp_path / "s.png", "invalid DYNSR_MAX_PIXELS='lots'")


def test_our_limit_overrides_a_stricter_pillow_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(tmp_path / "s.jpg", torch.rand(3, 20, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would refuse 600 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning may escape
        assert read_image(tmp_path / "s.jpg").pixels.shape == (3, 20, 30)
        assert read_image(tmp_path / "s.jpg", max_pixels=1000).pixels.shape == (3, 20, 30)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_unsupported_float_tiff(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    assert_read_fails(tmp_path / "f.tif", "unsupported image mode 'F'")


@pytest.mark.parametrize("channels,alpha", [(1, False), (1, True), (3, False), (3, True)])
def test_16_bit_tiff_round_trips_exactly(tmp_path: Path, channels: int, alpha: bool) -> None:
    colour = random_uint16(9, 7, channels)
    mask = random_uint16(9, 7, 1) if alpha else None
    icc = srgb_profile()
    write_image(tmp_path / "a.tif", colour, alpha=mask, bit_depth=16, icc_profile=icc)
    loaded = read_image(tmp_path / "a.tif")
    assert loaded.bit_depth == 16 and loaded.icc_profile == icc
    assert np.array_equal(to_samples(loaded.pixels, 16), colour)
    assert (loaded.alpha is None) == (not alpha)
    if alpha:
        assert np.array_equal(to_samples(loaded.alpha, 16), mask)
    # And back out again: the same file content.
    write_image(tmp_path / "b.tif", loaded.pixels, alpha=loaded.alpha, bit_depth=16,
                icc_profile=loaded.icc_profile)
    assert (tmp_path / "b.tif").read_bytes() == (tmp_path / "a.tif").read_bytes()


def test_tiffs_of_other_tools_are_read_in_full(tmp_path: Path) -> None:
    import tifffile

    # tifffile: planar, uncompressed, 16-bit RGB with an orientation tag (rotated 180°).
    colour = random_uint16(5, 6, 3)
    tifffile.imwrite(tmp_path / "p.tif", colour.transpose(2, 0, 1), photometric="rgb",
                     planarconfig="separate", extratags=[(274, "H", 1, 3, False)])
    loaded = read_image(tmp_path / "p.tif")
    assert loaded.bit_depth == 16 and loaded.mode == "RGB;16"
    assert np.array_equal(to_samples(loaded.pixels, 16), colour[::-1, ::-1])
    # Pillow: 8-bit LZW (tifffile would need imagecodecs; Pillow decodes it properly).
    rgb = RNG.integers(0, 256, (6, 5, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    assert np.array_equal(to_samples(read_image(tmp_path / "lzw.tif").pixels, 8), rgb)


def test_16_bit_tiff_that_only_imagecodecs_decodes_is_refused_clearly(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "c16.tif", random_uint16(4, 4, 3), photometric="rgb")
    with tifffile.TiffFile(tmp_path / "c16.tif") as tif:
        offset = tif.pages.first.tags[259].valueoffset  # Compression: 1 (none)
    data = bytearray((tmp_path / "c16.tif").read_bytes())
    data[offset:offset + 2] = (5).to_bytes(2, "little")  # now says LZW
    (tmp_path / "c16.tif").write_bytes(bytes(data))
    assert_read_fails(tmp_path / "c16.tif", "16-bit TIFF in LZW compression needs the "
                                            "imagecodecs package")


def test_avif_where_pillow_has_it(tmp_path: Path, astronaut: np.ndarray) -> None:
    from PIL import features

    source = torch.from_numpy(astronaut[:64, :48]).permute(2, 0, 1).float() / 255
    alpha = torch.rand(1, 64, 48)
    if not features.check("avif"):  # a Pillow without libavif: one clear line
        with pytest.raises(ImageWriteError, match="without AVIF support"):
            write_image(tmp_path / "a.avif", source)
        return
    icc = srgb_profile()
    write_image(tmp_path / "a.avif", source, alpha=alpha, quality=100, icc_profile=icc)
    loaded = read_image(tmp_path / "a.avif")
    assert loaded.bit_depth == 8 and loaded.icc_profile == icc
    assert loaded.pixels.shape == (3, 64, 48) and loaded.alpha.shape == (1, 64, 48)
    assert (loaded.pixels - source).abs().mean() < 0.01  # lossy, but close at quality 100
    assert (loaded.alpha - alpha).abs().mean() < 0.01
    assert tmp_path / "a.avif" in list_images([tmp_path])


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "locked.png", torch.rand(1, 4, 4))

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # chmod 000 means nothing to root, so refuse at the open() the reader uses
    monkeypatch.setattr(image_module, "open", refuse, raising=False)
    assert_read_fails(tmp_path / "locked.png", "permission denied")


# ------------------------------------------------------------------------------- writing


def test_write_creates_parent_folders_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.png"
    assert write_image(target, torch.rand(3, 4, 4)) == target
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert folder_listing(target.parent) == ["out.png"]


@pytest.mark.parametrize(
    "name,kwargs,reason",
    [
        ("x.gif", {}, "unsupported file extension '.gif'"),
        ("x.jpg", {"alpha": torch.rand(1, 4, 4)}, "JPEG cannot store an alpha channel"),
        ("x.jpg", {"bit_depth": 16}, "16-bit output is only supported for PNG"),
        ("x.png", {"bit_depth": 12}, "bit_depth must be 8 or 16"),
        ("x.png", {"quality": 0}, "quality must be an int from 1 to 100"),
        ("x.png", {"alpha": torch.rand(1, 5, 4)}, "alpha must be one channel of 4x4"),
    ],
)
def test_write_refuses_bad_requests(tmp_path: Path, name: str, kwargs: dict, reason: str) -> None:
    target = tmp_path / "out" / name
    with pytest.raises(ImageWriteError) as caught:
        write_image(target, torch.rand(3, 4, 4), **kwargs)
    assert str(caught.value).startswith(f"{target}: ") and reason in str(caught.value)
    assert folder_listing(tmp_path) == []


@pytest.mark.parametrize(
    "pixels,reason",
    [
        (torch.rand(4, 4, 4), "pixels must have 1 or 3 channels, got 4"),
        (torch.full((3, 2, 2), float("nan")), "NaN or infinite"),
        (np.zeros((2, 2, 3), np.int32), "must be floats in [0, 1] or uint8/uint16 samples, "
                                        "got int32"),
        (torch.rand(1, 3, 4, 4), "(C, H, W) or (H, W) tensor"),
        ([[0.5]], "must be a torch.Tensor or numpy.ndarray"),
    ],
)
def test_write_refuses_bad_pixels(tmp_path: Path, pixels: object, reason: str) -> None:
    with pytest.raises(ImageWriteError, match=None) as caught:
        write_image(tmp_path / "x.png", pixels)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert folder_listing(tmp_path) == []


def _fail(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("patched", ["replace", "fsync"])
def test_failed_write_leaves_no_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: str
) -> None:
    target = tmp_path / "out.png"
    monkeypatch.setattr(os, patched, _fail)
    with pytest.raises(ImageWriteError, match="No space left on device"):
        write_image(target, torch.rand(3, 8, 8))
    assert folder_listing(tmp_path) == []

    monkeypatch.undo()
    write_image(target, torch.zeros(3, 8, 8))
    original = target.read_bytes()
    monkeypatch.setattr(os, patched, _fail)
    with pytest.raises(ImageWriteError):
        write_image(target, torch.ones(3, 8, 8), bit_depth=16)
    assert target.read_bytes() == original
    assert folder_listing(tmp_path) == ["out.png"]


def test_encoder_crash_is_reraised_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", explode)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        write_image(tmp_path / "sub" / "x.webp", torch.rand(3, 8, 8))
    assert not (tmp_path / "sub" / "x.webp").exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_write_crash_mid_file_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen

    class BrokenFile(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.inner = real_fdopen(fd, "wb")

        def write(self, chunk: bytes) -> int:  # type: ignore[override]
            self.inner.write(chunk[:10])  # part of the file reaches the disk, then...
            raise KeyboardInterrupt

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: BrokenFile(fd))
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "x.png", torch.rand(3, 8, 8))
    assert folder_listing(tmp_path) == []


def test_atomic_write_text(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "r" / "report.json", '{"psnr": 1}\n')
    assert target.read_text() == '{"psnr": 1}\n'
    assert folder_listing(tmp_path) == ["r", "r/report.json"]


def test_errors_pickle(tmp_path: Path) -> None:
    import pickle

    error = pickle.loads(pickle.dumps(ImageReadError(tmp_path / "a.png", "file is empty")))
    assert (
        isinstance(error, ImageReadError) and str(error) == f"{tmp_path / 'a.png'}: file is empty"
    )


# ------------------------------------------------------------------------------- listing


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.txt", ".hidden.png", "._b.png", "sub/d.webp", "sub/e.tif"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "f.png").write_bytes(b"x")
    assert ".jpg" in IMAGE_EXTENSIONS and ".txt" not in IMAGE_EXTENSIONS

    assert list_images(tmp_path) == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert list_images([tmp_path], recursive=True) == [
        tmp_path / "a.JPG",
        tmp_path / "b.png",
        tmp_path / "sub" / "d.webp",
        tmp_path / "sub" / "e.tif",
    ]
    # explicit files kept in the given order, duplicates dropped
    assert list_images([tmp_path / "c.txt", str(tmp_path / "b.png"), tmp_path]) == [
        tmp_path / "c.txt",
        tmp_path / "b.png",
        tmp_path / "a.JPG",
    ]
    with pytest.raises(ImageReadError, match="does not exist"):
        list_images([tmp_path / "nope"])


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_quantising_in_row_bands_changes_nothing(tmp_path, monkeypatch, bit_depth):
    # Large images are quantised a band of rows at a time to bound memory; the bytes written
    # must not depend on the band size (bands of 3 rows split this 37-row image unevenly).
    rng = np.random.default_rng(5)
    colour = torch.from_numpy(rng.random((3, 37, 29)))
    alpha = torch.from_numpy(rng.random((1, 37, 29)))
    whole = write_image(tmp_path / "whole.png", colour, alpha, bit_depth=bit_depth)
    monkeypatch.setattr(image_writer, "_QUANTISE_BAND_ELEMENTS", 3 * 29 * 4)
    banded = write_image(tmp_path / "banded.png", colour, alpha, bit_depth=bit_depth)
    assert whole.read_bytes() == banded.read_bytes()
    back = read_image(banded)
    maxval = 2**bit_depth - 1
    expected = np.floor(colour.numpy() * maxval + 0.5) / maxval
    np.testing.assert_allclose(back.pixels.double().numpy(), expected, atol=1e-7)


def test_integer_samples_are_written_as_they_are_or_rescaled(tmp_path):
    rgb = data.astronaut()[:40, :50]
    samples = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    write_image(tmp_path / "a.png", samples)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), rgb)
    # uint16 samples into an 8-bit file: as the float v / 65535 would be written.
    deep = samples.to(torch.int32) * 257 + 100
    deep = deep.to(torch.uint16)
    write_image(tmp_path / "b.png", deep)
    write_image(tmp_path / "c.png", deep.to(torch.float64) / 65535)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")),
                          np.asarray(Image.open(tmp_path / "c.png")))
    write_image(tmp_path / "d.png", deep, bit_depth=16)
    back = read_image(tmp_path / "d.png")
    assert back.bit_depth == 16
    assert torch.equal(torch.floor(back.pixels.double() * 65535 + 0.5).to(torch.int32),
                       deep.to(torch.int32))
