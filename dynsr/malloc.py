"""glibc malloc settings for long jobs: freed memory kept for reuse (every ``dynsr`` command
and :func:`dynsr.load` on the CPU set them; the benchmarks can too).
``DYNSR_KEEP_FREED_MEMORY=0`` leaves malloc as it is."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["keep_freed_memory"]

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks of any size for reuse (True if it could).

    PyTorch's CPU tensors come from malloc, and glibc serves large blocks with fresh mmaps
    that it unmaps when freed (and trims the heap top), so every training step, tile or
    DualSR iteration pays page faults on its large temporaries again. Here blocks never get
    their own mapping (``M_MMAP_MAX`` 0; the threshold is also raised to its 32 MB maximum
    for C libraries that ignore that) and the trim threshold is 1 GB, so freed memory stays
    mapped and is reused. Measured on 2 cores: a DDet x2 training step 272 -> 238 ms with the
    32 MB threshold alone (1 thread, Xeon); then, without any fresh mappings (AMD EPYC,
    medians of three): upscaling a 640x360 frame x2 with DDet 1.85 -> 1.56 s (peak RSS 552 ->
    712 MB), UDVD-lite 2.12 -> 2.01 s, DyConvSR 34 -> 30 ms; the k = 7 dynamic-filter forward
    + backward at 512x512, whose 51 MB kernel gradient is above any threshold, 20.7 -> 9.7 ms.
    The process keeps its peak memory until it ends, which suits a command. Not done on other
    C libraries, nor when the environment sets ``DYNSR_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get("DYNSR_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no",
                                                                           "off"):
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return (bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20))
            and bool(libc.mallopt(_M_MMAP_MAX, 0))
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)))
