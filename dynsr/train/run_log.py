"""What a run tells as it goes: ``log.csv`` row by row, the line printed without a progress
bar, and the stop requests it obeys (SIGTERM, Ctrl-C)."""

from __future__ import annotations

import csv
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["LOG_COLUMNS", "CsvLog", "StopSignals", "log_line"]

LOG_COLUMNS = ("iteration", "loss", "lr", "it_per_s", "elapsed_s", "val_psnr_y", "val_ssim_y")


class CsvLog:
    """``log.csv``, appended row by row; on resume, rows after the checkpoint (written by the
    interrupted session) are dropped so that the log reads as one run."""

    def __init__(self, path: Path, iteration: int, append: bool) -> None:
        rows: list[dict] = []
        if append and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) <= iteration]
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: _csv_value(row.get(k)) for k in LOG_COLUMNS})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return str(value)


def log_line(row: dict, total: int) -> str:
    line = (f"it {row['iteration']}/{total}  loss {row['loss']:.5g}  lr {row['lr']:.3g}  "
            f"{row['it_per_s']:.2f} it/s")
    if row["val_psnr_y"] is not None:
        line += f"  val PSNR-Y {row['val_psnr_y']:.4f} SSIM-Y {row['val_ssim_y']:.5f}"
    return line


class StopSignals:
    """SIGTERM / SIGINT ask the loop to stop after the current iteration (with a
    checkpoint); a second signal acts as usual. Only in the main thread (signal rules)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second signal: the default behaviour
            previous = self._previous.get(signum)
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.requested = True
        print(f"\ndynsr train: {signal.Signals(signum).name}: stopping after this iteration "
              f"(again to stop now)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
