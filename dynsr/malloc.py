"""glibc malloc settings for long jobs: freed memory kept for reuse (every ``dynsr`` command
sets them; the benchmarks can too)."""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["keep_freed_memory"]

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of up to 32 MB for reuse (True if it could).

    PyTorch's CPU tensors come from malloc, and glibc serves large blocks with fresh mmaps
    that it unmaps when freed (and trims the heap top), so every training step, tile or
    DualSR iteration pays page faults on its large temporaries again. Raising the mmap
    threshold to its maximum and the trim threshold to 1 GB keeps that memory mapped: a DDet
    x2 training step went from 272 to 238 ms on this 2-core CPU (1 thread, quiet machine,
    the same as MALLOC_MMAP_THRESHOLD_=33554432 in the environment). The process keeps its
    peak memory until it ends, which suits a command. Not done on other C libraries.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
