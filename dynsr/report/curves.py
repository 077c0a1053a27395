"""A training run's curves as a PNG (``dynsr plot``; written by ``dynsr train`` at the end).

Reads the run folder's ``log.csv`` (one row per logging step: ``iteration``, ``loss`` = mean
since the previous row, ``lr``, ``it_per_s``, ``elapsed_s`` = training seconds so far, and
``val_psnr_y`` / ``val_ssim_y`` where validation ran; :mod:`dynsr.train.engine`) and its
``summary.json`` (name, model, scale, best validation, whether it completed), and draws
four panels: the loss and the validation PSNR-Y, each against iterations and against hours
of training. Hours are ``elapsed_s``, which counts training only (resumed runs continue
their clock), so runs on different machines can be compared by their cost.

matplotlib is an optional dependency (``pip install 'dynsr[plot]'``); it is used through
its object API with the Agg canvas, so no window opens and no global backend is changed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dynsr.io import atomic_write_bytes

__all__ = ["PLOT_NAME", "RunLog", "plot_after_training", "plot_run", "read_run"]

#: File name of the plot in the run folder.
PLOT_NAME = "curves.png"
MATPLOTLIB_HINT = "matplotlib is not installed: pip install 'dynsr[plot]' (or matplotlib)"


@dataclass
class RunLog:
    """The columns of a run's log.csv that the plot uses, and its summary."""

    folder: Path
    iteration: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # NaN where the row has none
    hours: list[float] = field(default_factory=list)
    val_iteration: list[int] = field(default_factory=list)
    val_hours: list[float] = field(default_factory=list)
    val_psnr: list[float] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        s = self.summary
        name = s.get("name") or self.folder.name
        model = f"{s['model']} x{s['scale']}" if "model" in s and "scale" in s else ""
        state = ""
        if "iteration" in s and "iterations" in s:
            state = ("completed" if s.get("completed") else "stopped") + \
                f" at {s['iteration']:,} of {s['iterations']:,} iterations"
        return " · ".join(p for p in (name, model, state) if p)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_run(folder: Path) -> RunLog:
    """Read ``folder``'s log.csv (required) and summary.json (optional); ``ValueError`` /
    ``OSError`` as ``path: reason``."""
    folder = Path(folder)
    path = folder / "log.csv"
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a run folder (no such folder)")
    if not path.is_file():
        raise ValueError(f"{path}: no training log here (dynsr train writes log.csv)")
    run = RunLog(folder)
    with open(path, newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = {"iteration", "loss", "elapsed_s", "val_psnr_y"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a dynsr training log (no {', '.join(sorted(missing))} "
                             "column)")
        for row in reader:
            iteration = _number(row["iteration"])
            if math.isnan(iteration):
                continue
            hours = _number(row["elapsed_s"]) / 3600
            run.iteration.append(int(iteration))
            run.loss.append(_number(row["loss"]))
            run.hours.append(hours)
            psnr = _number(row["val_psnr_y"])
            if not math.isnan(psnr):
                run.val_iteration.append(int(iteration))
                run.val_hours.append(hours)
                run.val_psnr.append(psnr)
    if not run.iteration:
        raise ValueError(f"{path}: the log has no rows yet")
    summary = folder / "summary.json"
    if summary.is_file():
        try:
            run.summary = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{summary}: not readable JSON ({err})") from err
    return run


def plot_run(folder: Path, out: Path | None = None, *, dpi: int = 110) -> Path:
    """Draw the curves of the run in ``folder`` (module doc) into ``out`` (default
    ``folder/curves.png``), atomically; returns the path. ``ImportError`` without
    matplotlib (its message says how to install it)."""
    run = read_run(folder)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as err:
        raise ImportError(MATPLOTLIB_HINT) from err
    out = Path(folder) / PLOT_NAME if out is None else Path(out)

    figure = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2)
    loss_points = [(i, h, v) for i, h, v in zip(run.iteration, run.hours, run.loss, strict=True)
                   if not math.isnan(v)]
    best = run.summary.get("best") or {}
    for column, (xlabel, key) in enumerate((("iterations", 0), ("hours of training", 1))):
        ax = axes[0][column]
        if loss_points:
            ax.plot([p[key] for p in loss_points], [p[2] for p in loss_points],
                    color="#0b6bcb", linewidth=1)
            if all(p[2] > 0 for p in loss_points):
                ax.set_yscale("log")
                # Plain numbers (0.022) rather than 2.2×10⁻²: losses span less than a decade.
                plain = FuncFormatter(lambda value, _: f"{value:.3g}")
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(plain)
        ax.set_ylabel("training loss (mean per log row)")
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax = axes[1][column]
        xs = run.val_iteration if key == 0 else run.val_hours
        if run.val_psnr:
            ax.plot(xs, run.val_psnr, color="#d9480f", marker="o", markersize=3, linewidth=1)
            if best.get("psnr_y") is not None and best.get("iteration") in run.val_iteration:
                at = run.val_iteration.index(best["iteration"])
                ax.plot([xs[at]], [run.val_psnr[at]], marker="*", markersize=12,
                        color="#2b8a3e", linestyle="none",
                        label=f"best {best['psnr_y']:.2f} dB at {best['iteration']:,}")
                ax.legend(loc="lower right")
        else:
            ax.text(0.5, 0.5, "no validation in this run", ha="center", va="center",
                    transform=ax.transAxes, color="#5d6874")
        ax.set_ylabel("validation PSNR-Y (dB)")
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    figure.suptitle(run.title, fontsize=12)
    data = io.BytesIO()
    figure.savefig(data, format="png", dpi=dpi)
    return atomic_write_bytes(out, data.getvalue())


def plot_after_training(folder: Path) -> Path | None:
    """What ``dynsr train`` calls at the end of a run: the plot, or None when matplotlib is
    not installed. Never raises: a finished training must not fail on its picture (a
    failure is one line on stderr)."""
    try:
        return plot_run(folder)
    except ImportError:
        return None
    except Exception as err:  # noqa: BLE001 - the run's results are written already
        print(f"dynsr train: no curves plot: {err}", file=sys.stderr)
        return None
