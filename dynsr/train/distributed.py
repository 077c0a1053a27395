"""The processes of a run: one, or several under torchrun, and the torch settings a run holds
while it trains.

Several processes
-----------------
Under ``torchrun --nproc_per_node=N -m dynsr train ...`` (``WORLD_SIZE`` > 1 in the
environment) each process trains on its own samples (``train.batch_size`` each, so the
effective batch is N times larger) with DistributedDataParallel: gloo on the CPU, nccl on
GPUs. All processes hold the same weights after every step (checked at the end); only the
first validates and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "torch_settings"]


@dataclasses.dataclass
class DistributedContext:
    """Which process this is; ``world_size`` 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls) -> DistributedContext:
        """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``,
        ``MASTER_ADDR``/``MASTER_PORT``), or a single-process context."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if world_size <= 1:
            return cls(device=device)
        owns = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (stopping together)."""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def torch_settings(threads: int | None) -> Iterator[None]:
    """Deterministic algorithms and the thread count for the run; restored afterwards."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    # warn_only: an op without a deterministic kernel warns instead of stopping training.
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
