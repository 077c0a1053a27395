"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module, restored afterwards: tests run many tiny ops, and
    on a busy 2-core machine a second intra-op thread only adds synchronisation stalls
    (10x slower data-set tests, 1.5 s instead of 10 ms per small DDet forward)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
