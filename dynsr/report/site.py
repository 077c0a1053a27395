"""Writing a report folder: the pages, the index, the script and style sheet, report.json.

Everything a page needs is in the folder: ``assets/report.js`` and ``assets/report.css``
(copied from this package) and the images; the page's data is JSON inside the page itself,
because a page opened from disk (``file://``) may load scripts and images but not
``fetch`` files. Nothing comes from the internet and no server is needed.

Layout::

    OUT/index.html            the image's page (one input) or the index of all pages
    OUT/NAME.html             one page per input (several inputs)
    OUT/NAME/KEY.png          every result at full resolution (KEY: lr, bicubic, a model)
    OUT/NAME/KEY.preview.png  downscaled copies for the before/after view (large images)
    OUT/NAME/KEY.kernels.js   UDVD's sampled kernels (--kernels)
    OUT/NAME/crops.png        the crop comparison picture (--figure)
    OUT/assets/               report.js, report.css
    OUT/report.json           every page's data: scores, times, settings
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from string import Template

from dynsr.io import ImageWriteError, atomic_write_json
from dynsr.report.data import Report

__all__ = ["ASSETS", "staged_folder", "write_site"]

#: The files copied into ``OUT/assets``.
ASSETS = ("report.js", "report.css")


def _asset_text(name: str) -> str:
    return resources.files("dynsr.report").joinpath("assets", name).read_text("utf-8")


@contextlib.contextmanager
def staged_folder(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A hidden temporary folder next to ``out`` that becomes ``out`` when the block ends
    without an error (and is removed when it fails). An existing non-empty ``out`` is only
    replaced with ``overwrite``; it is renamed aside first, so ``out`` is always either the
    old report or the new one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ImageWriteError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ImageWriteError(out, "folder exists and is not empty (use --overwrite to "
                                   "replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise ImageWriteError(out, f"cannot create a folder next to it: "
                                   f"{exc.strerror or exc}") from exc
    try:
        yield temp
        os.chmod(temp, 0o777 & ~_umask())  # mkdtemp makes it private; a report is not
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "report")
            os.replace(temp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _json_for_html(value: object) -> str:
    # Inside <script>: no "</script>" or "<!--" may appear, whatever the file names hold.
    text = json.dumps(value, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf/NaN (identical images have an infinite PSNR)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _page_html(report: Report, index: int, crop: tuple[int, int, int] | None,
               template: Template) -> str:
    page = report.pages[index]
    nav = {
        "index": None if page.file == "index.html" else "index.html",
        "prev": report.pages[index - 1].file if index > 0 else None,
        "next": report.pages[index + 1].file if index + 1 < len(report.pages) else None,
        "position": [index + 1, len(report.pages)],
    }
    data = _finite({"page": asdict(page), "settings": report.settings, "nav": nav,
                    "crop": list(crop) if crop else None})
    scripts = "\n".join(f'<script src="{html.escape(r.kernels)}"></script>'
                        for r in page.results if r.kernels)
    return template.substitute(
        title=html.escape(f"{page.name} — dynsr compare"),
        heading=html.escape(page.name),
        data=_json_for_html(data),
        scripts=scripts,
    )


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def _index_html(report: Report, template: Template) -> str:
    """The folder's index: one row per page with a thumbnail, its link and the scores."""
    labels: list[str] = []
    for page in report.pages:
        for r in page.results:
            if r.kind == "model" and r.label not in labels:
                labels.append(r.label)
    scored = any(r.psnr_y is not None for p in report.pages for r in p.results)
    head = "".join(f'<th scope="col">{html.escape(label)}</th>' for label in labels)
    rows = []
    for page in report.pages:
        by_label = {r.label: r for r in page.results}
        shown = next((r for r in reversed(page.results) if r.kind == "model"), page.results[0])
        cells = []
        for label in labels:
            r = by_label.get(label)
            if r is None:
                cells.append("<td>—</td>")
                continue
            score = (f"{_cell(r.psnr_y, 2)} dB<br><small>{_cell(r.ssim_y, 4)}</small>"
                     if scored else "")
            cells.append(f'<td class="num">{score}<br><small>{_cell(r.seconds, 2)} s</small>'
                         "</td>")
        href = html.escape(page.file)
        rows.append(
            f'<tr><td><a href="{href}"><img class="thumb" src="{html.escape(shown.preview.path)}"'
            f' alt="{html.escape(page.name)}"></a></td>'
            f'<td><a class="page-link" href="{href}">{html.escape(page.name)}</a><br><small>'
            f"{page.lr_size[0]}×{page.lr_size[1]} → {page.sr_size[0]}×{page.sr_size[1]}"
            f"</small></td>{''.join(cells)}</tr>")
    failed = ""
    if report.failures:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in report.failures)
        failed = f'<section class="failures"><h2>Left out</h2><ul>{items}</ul></section>'
    what = ("PSNR-Y (dB), SSIM-Y and seconds per model" if scored
            else "seconds per model (no HR images: no scores)")
    count = f"{len(report.pages)} image{'s' if len(report.pages) != 1 else ''}"
    body = (f'<p class="lead">{count}, x{report.settings.get("scale")}: '
            f"{what}. Click an image to compare the models on it.</p>"
            f'<table class="index"><thead><tr><th scope="col">image</th><th scope="col">name'
            f"</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{failed}")
    return template.substitute(title=html.escape(report.title),
                               heading=html.escape(report.title), body=body)


def write_site(report: Report, folder: Path, *, crop: tuple[int, int, int] | None = None
               ) -> None:
    """Write the pages, the index (several pages), the assets and ``report.json`` of
    ``report`` into ``folder``, where its images already are. ``crop``: where the zoom
    starts (x, y, side in SR pixels; default the middle)."""
    folder = Path(folder)
    page_template = Template(_asset_text("page.html"))
    for name in ASSETS:
        target = folder / "assets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_asset_text(name), encoding="utf-8")
    for i, page in enumerate(report.pages):
        (folder / page.file).write_text(_page_html(report, i, crop, page_template),
                                        encoding="utf-8")
    if all(page.file != "index.html" for page in report.pages):  # several inputs
        index = _index_html(report, Template(_asset_text("index.html")))
        (folder / "index.html").write_text(index, encoding="utf-8")
    atomic_write_json(folder / "report.json", report.as_dict())

