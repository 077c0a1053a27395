"""What a comparison report holds: plain dataclasses, written as JSON into every page.

The page script (``report.js``) reads exactly these fields, so anything that produces
them — :func:`dynsr.report.compare.compare`, or a test — gets the same page. Paths are
relative to the report folder, with ``/`` separators.

Extra pictures (a kernel estimate, a noise map, ...) are :class:`Figure` items: per image
in :attr:`Page.figures`, per model in :attr:`Result.figures`. The page shows each with its
caption under "Figures".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Figure", "Page", "Picture", "Report", "Result"]


@dataclass
class Figure:
    """An extra picture of an image or of one model's run on it."""

    caption: str
    path: str  # relative to the report folder


@dataclass
class Picture:
    """An image file of the report and its size in pixels."""

    path: str
    width: int
    height: int


@dataclass
class Result:
    """One image shown for an input: a model's SR, or a reference (LR, HR)."""

    key: str  # unique on its page; also the stem of its files
    label: str
    kind: str  # "model" or "reference"
    full: Picture  # full resolution (the LR at its own size: see ``pixel``)
    preview: Picture  # what the before/after view shows (``full`` when small enough)
    pixel: int = 1  # SR pixels per pixel of ``full`` (the scale for the LR, else 1)
    seconds: float | None = None  # the model's time on this image
    psnr_y: float | None = None
    ssim_y: float | None = None
    note: str = ""  # e.g. the weights file, or what a reference is
    figures: list[Figure] = field(default_factory=list)
    kernels: str | None = None  # script with UDVD's sampled kernels (dynsr.report.kernels)


@dataclass
class Page:
    """One input image: its results and where its page is."""

    name: str  # the input's name as the user knows it (relative path without suffix)
    slug: str  # folder of its files; its page is ``{slug}.html`` (or index.html alone)
    file: str  # the page's file name
    source: str  # the input file
    scale: int
    lr_size: tuple[int, int]  # (width, height)
    sr_size: tuple[int, int]
    results: list[Result]
    hr_source: str | None = None
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A whole report: its pages, the settings it was made with and what failed."""

    title: str
    pages: list[Page]
    settings: dict
    failures: list[str] = field(default_factory=list)  # "path: reason" lines

    def as_dict(self) -> dict:
        return asdict(self)
