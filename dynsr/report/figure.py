"""A crop comparison picture of one report page: the same square of every result side by side.

Each tile is the square ``(x, y, side)`` of SR pixels cut from a result's full-resolution
PNG and enlarged by an integer factor with nearest-neighbour sampling (the LR by the scale
times that factor), so what is seen is exactly the pixels the report's zoom shows. The first
tile is an overview of the whole image with the square marked. Under each tile: the label,
and PSNR-Y / SSIM-Y and the time where there are some. Written as ``NAME/crops.png``
(``dynsr compare --figure``); the README's picture is one.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dynsr.io import atomic_write_bytes
from dynsr.report.data import Figure, Page

__all__ = ["TILE", "crop_figure", "default_crop", "fit_crop", "write_crop_figure"]

#: Wanted tile side in picture pixels (the enlargement is the integer factor nearest to it).
TILE = 224
_PAD = 10
_CAPTION = 40


def default_crop(page: Page, side: int = 64) -> tuple[int, int, int]:
    """A square of ``side`` SR pixels (less for small images) in the middle of the image."""
    width, height = page.sr_size
    side = max(1, min(side, width, height))
    return (width - side) // 2, (height - side) // 2, side


def fit_crop(page: Page, crop: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """``crop`` moved and shrunk as little as needed to lie inside the page's SR image
    (one ``--crop`` serves a folder of images of different sizes); None: the default."""
    if crop is None:
        return default_crop(page)
    x, y, side = crop
    width, height = page.sr_size
    side = max(1, min(side, width, height))
    return min(max(0, x), width - side), min(max(0, y), height - side), side


def _check_crop(page: Page, crop: tuple[int, int, int]) -> tuple[int, int, int]:
    x, y, side = crop
    width, height = page.sr_size
    if side < 1 or x < 0 or y < 0 or x + side > width or y + side > height:
        raise ValueError(f"crop {x},{y},{side} does not fit in the {width}x{height} SR image "
                         f"of {page.source}")
    return x, y, side


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def crop_figure(folder: Path, page: Page, crop: tuple[int, int, int] | None = None
                ) -> Image.Image:
    """The picture (module doc) of ``page``, whose images are in the report ``folder``."""
    x, y, side = _check_crop(page, crop or default_crop(page))
    zoom = max(1, round(TILE / side))
    tile = side * zoom
    results = page.results
    columns = min(len(results) + 1, 4 if len(results) + 1 > 5 else len(results) + 1)
    rows = -(-(len(results) + 1) // columns)
    canvas = Image.new("RGB", (_PAD + columns * (tile + _PAD),
                               _PAD + rows * (tile + _CAPTION + _PAD)), "white")
    draw = ImageDraw.Draw(canvas)
    bold, small = _font(14), _font(12)

    def place(i: int, image: Image.Image, title: str, detail: str) -> None:
        left = _PAD + (i % columns) * (tile + _PAD)
        top = _PAD + (i // columns) * (tile + _CAPTION + _PAD)
        canvas.paste(image, (left, top))
        draw.text((left, top + tile + 4), title, fill=(29, 35, 42), font=bold)
        draw.text((left, top + tile + 21), detail, fill=(93, 104, 116), font=small)

    width, height = page.sr_size
    # Overview: the last model's (or the HR's) full picture, the square in yellow.
    overview_of = next((r for r in reversed(results) if r.pixel == 1), results[-1])
    with Image.open(folder / overview_of.full.path) as source:
        overview = source.convert("RGB")
    overview.thumbnail((tile, tile), Image.Resampling.LANCZOS)
    back = Image.new("RGB", (tile, tile), (32, 37, 43))
    back.paste(overview, ((tile - overview.width) // 2, (tile - overview.height) // 2))
    f = overview.width / width
    ox, oy = (tile - overview.width) // 2, (tile - overview.height) // 2
    ImageDraw.Draw(back).rectangle(
        [ox + x * f - 1, oy + y * f - 1, ox + (x + side) * f, oy + (y + side) * f],
        outline=(255, 212, 59), width=2)
    place(0, back, page.name, f"x{page.scale}, {width}x{height}, crop {side}x{side} at {x},{y}")

    for i, r in enumerate(results, 1):
        with Image.open(folder / r.full.path) as source:
            image = source.convert("RGB")
        p = r.pixel
        # The LR's pixels cover p×p SR pixels: cut the LR pixels under the square, enlarge
        # them by p·zoom, then cut the square itself (exactly what the report's zoom shows).
        box = (x // p, y // p, -(-(x + side) // p), -(-(y + side) // p))
        piece = image.crop(box).resize(((box[2] - box[0]) * p * zoom,
                                        (box[3] - box[1]) * p * zoom), Image.Resampling.NEAREST)
        dx, dy = (x - box[0] * p) * zoom, (y - box[1] * p) * zoom
        piece = piece.crop((dx, dy, dx + tile, dy + tile))
        parts = []
        if r.psnr_y is not None:
            parts.append(f"{r.psnr_y:.2f} dB / {r.ssim_y:.4f}")
        if r.seconds is not None:
            parts.append(f"{r.seconds:.2f} s")
        place(i, piece, r.label, ", ".join(parts) or ("reference" if r.kind != "model" else ""))
    return canvas


def write_crop_figure(folder: Path, page: Page, crop: tuple[int, int, int] | None = None
                      ) -> Figure:
    """Write :func:`crop_figure` as ``{page.slug}/crops.png`` in ``folder``; the figure
    item that shows it on the page."""
    picture = crop_figure(folder, page, crop)
    data = io.BytesIO()
    picture.save(data, format="PNG", optimize=True)
    rel = f"{page.slug}/crops.png"
    atomic_write_bytes(folder / rel, data.getvalue())
    where = crop or default_crop(page)
    return Figure(f"crop comparison, {where[2]}x{where[2]} SR pixels at {where[0]},{where[1]}",
                  rel)
