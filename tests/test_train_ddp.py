"""Two CPU processes (gloo DistributedDataParallel) train DyConvSR for a few steps."""

from __future__ import annotations

import os
import socket

import pytest
import skimage.data
import torch
import torch.multiprocessing as mp
from PIL import Image
from safetensors.torch import load_file

from dynsr.models import create
from dynsr.train.engine import train
from dynsr.train.state import seed_everything

BATCH, STEPS = 2, 4


def _config(train_dir, val_dir, batch_size: int) -> dict:
    return {
        "name": "ddp",
        "model": {"name": "dyconvsr", "scale": 2},
        "data": {"train": {"type": "hr_folder", "paths": str(train_dir), "patch_size": 32},
                 "val": {"hr": str(val_dir), "every": STEPS}},
        "train": {"iterations": STEPS, "batch_size": batch_size, "lr": 2e-3, "threads": 1,
                  "schedule": "constant", "seed": 3},
        "checkpoint": {"every": 2},
        "log": {"every": 1, "progress": "never"},
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, root: str) -> None:
    # What torchrun sets for each process it starts.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2", OMP_NUM_THREADS="1")
    result = train(_config(f"{root}/train", f"{root}/val", BATCH), f"{root}/out")
    torch.save(result.model.state_dict(), f"{root}/rank{rank}.pt")


@pytest.fixture()
def photos(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    Image.fromarray(skimage.data.astronaut()[::2, ::2]).save(tmp_path / "train" / "a.png")
    Image.fromarray(skimage.data.coffee()[::2, ::2]).save(tmp_path / "train" / "c.png")
    Image.fromarray(skimage.data.chelsea()[:96, :96]).save(tmp_path / "val" / "chelsea.png")
    return tmp_path


def test_two_processes_hold_identical_trained_weights(photos):
    mp.spawn(_rank_main, args=(_free_port(), str(photos)), nprocs=2, join=True)
    rank0 = torch.load(photos / "rank0.pt", weights_only=True)
    rank1 = torch.load(photos / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    seed_everything(3)
    initial = create("dyconvsr", scale=2).state_dict()
    changed = [k for k in initial if not torch.equal(initial[k], rank0[k])]
    assert "head.weight" in changed and "tail.weight" in changed

    # Only the first process writes; its export holds the trained weights.
    exported = load_file(photos / "out" / "model.safetensors")
    assert all(torch.equal(exported[k], rank0[k]) for k in exported)
    assert (photos / "out" / "log.csv").read_text().count("\n") == STEPS + 1

    # Rank r takes samples (it·2 + r)·B + b: together one process's batch of 2B, so a single
    # process with the double batch follows the same path (up to summation order).
    single = train(_config(photos / "train", photos / "val", 2 * BATCH), photos / "single")
    worst = max((single.model.state_dict()[k] - rank0[k]).abs().max().item() for k in rank0)
    assert worst < 1e-5
