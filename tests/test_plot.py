"""`dynsr plot`: a training run's curves as a PNG, and the plot `dynsr train` writes at the end."""

import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from dynsr.cli.main import main
from dynsr.report.curves import plot_after_training, read_run

RUNS = Path(__file__).resolve().parents[1] / "training"
LOG_HEADER = "iteration,loss,lr,it_per_s,elapsed_s,val_psnr_y,val_ssim_y\n"


def _is_drawn_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 400
        pixels = np.asarray(image.convert("RGB"))
    # Lines in the two colours the plot uses (loss blue, validation orange), not a blank page.
    blue = np.all(np.abs(pixels.astype(int) - (11, 107, 203)) < 40, axis=-1).sum()
    orange = np.all(np.abs(pixels.astype(int) - (217, 72, 15)) < 40, axis=-1).sum()
    assert blue > 200 and orange > 100


def test_plot_of_a_committed_run(tmp_path, capsys):
    run = RUNS / "dyconvsr_x2_cpu"
    assert (run / "log.csv").is_file(), "the committed run's log.csv is part of the repository"
    out = tmp_path / "curves.png"
    assert main(["plot", str(run), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    _is_drawn_png(out)
    log = read_run(run)
    assert log.iteration[-1] == log.summary["iteration"]
    assert log.val_psnr[-1] == pytest.approx(log.summary["validation"][-1]["psnr_y"], abs=1e-3)
    assert log.hours[-1] == pytest.approx(log.summary["wall_time_s"] / 3600, abs=1e-3)


def test_plot_of_a_run_folder_and_bad_folders(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [f"{i},{0.05 / (1 + i / 100):.5f},0.001,10,{i / 10:.1f},"
            + (f"{30 + i / 200:.3f},0.9" if i % 400 == 0 else ",") for i in range(0, 2001, 100)]
    (run / "log.csv").write_text(LOG_HEADER + "\n".join(rows) + "\n")
    assert main(["plot", str(run)]) == 0
    _is_drawn_png(run / "curves.png")  # no summary.json: still drawn
    empty = tmp_path / "empty"
    empty.mkdir()
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "log.csv").write_text("a,b\n1,2\n")
    capsys.readouterr()
    assert main(["plot", str(empty), str(wrong), str(run)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [f"dynsr plot: failed: {empty / 'log.csv'}: no training log here (dynsr "
                     "train writes log.csv)",
                     f"dynsr plot: failed: {wrong / 'log.csv'}: not a dynsr training log (no "
                     "elapsed_s, iteration, loss, val_psnr_y column)"]
    assert captured.out.strip() == f"wrote {run / 'curves.png'}"


def test_without_matplotlib(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(LOG_HEADER + "100,0.1,0.001,10,5,,\n")
    # A None entry makes `import matplotlib...` raise ImportError, as when it is missing.
    for name in [m for m in sys.modules if m.startswith("matplotlib")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_after_training(run) is None and not (run / "curves.png").exists()
    assert main(["plot", str(run)]) == 1
    assert capsys.readouterr().err.strip() == (
        "dynsr plot: error: matplotlib is not installed: pip install 'dynsr[plot]' (or "
        "matplotlib)")


def test_train_writes_its_curves_at_the_end(tmp_path):
    from dynsr.train.engine import train

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.astronaut()[::4, ::4]).save(photos / "astronaut.png")
    Image.fromarray(skimage.data.chelsea()[60:124, 100:164]).save(tmp_path / "val.png")
    config = {
        "name": "tiny",
        "model": {"name": "dyconvsr", "scale": 2},
        "data": {"train": {"type": "hr_folder", "paths": str(photos), "patch_size": 32},
                 "val": {"hr": [str(tmp_path / "val.png")], "every": 4}},
        "train": {"iterations": 8, "batch_size": 2, "lr": 2e-3, "threads": 1},
        "checkpoint": {"every": 8},
        "log": {"every": 2, "progress": "never"},
    }
    train(config, tmp_path / "run")
    _is_drawn_png(tmp_path / "run" / "curves.png")
