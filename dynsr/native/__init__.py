"""Native kernels: small C sources built with the system's C compiler on first use.

Only what torch cannot do near the memory floor lives here: the one-pass dynamic-filter tap
loops (``dynamic_taps.c``, used by :mod:`dynsr.ops.dynamic` for fp32 CPU tensors). The C
source has no dependency beyond libc and pthreads; it is compiled once per machine, source,
instruction-set target, compiler and CPU model into ``$DYNSR_CACHE`` (default ``~/.cache/dynsr``),
written to a temporary file and renamed, and loaded with :mod:`ctypes` (ctypes calls release
the GIL; the C code runs its own threads, as many as ``torch.get_num_threads()``).

Without a working compiler, or with ``DYNSR_NATIVE=0``, everything falls back to the torch
implementation, which gives the same results to float rounding.

The instruction-set target follows what PyTorch was told to dispatch: ``-march=native``
normally, ``-march=x86-64-v3`` (AVX2 + FMA) under ``ATEN_CPU_CAPABILITY=avx2``, plain x86-64
under ``default``, so a capped run measures what an AVX2-only CPU would run.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

from dynsr.hardware import cpu_flags, cpu_model

__all__ = ["DynamicTaps", "build_version", "dynamic_taps", "native_enabled"]

_SOURCE = Path(__file__).with_name("dynamic_taps.c")


def native_enabled() -> bool:
    """False when ``DYNSR_NATIVE=0`` asks for the pure-torch paths."""
    return os.environ.get("DYNSR_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _march_flags() -> list[str]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ["-mcpu=native"] if platform.machine().lower() in ("aarch64", "arm64") else []
    cap = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if cap == "avx2":
        return ["-march=x86-64-v3"]
    if cap == "default":
        return ["-march=x86-64"]
    return ["-march=native"]


def _cache_dir() -> Path:
    root = os.environ.get("DYNSR_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "dynsr"


def _build(cc: str, flags: list[str], source: Path = _SOURCE) -> Path:
    """The compiled library for this source, compiler and flags (built if not cached)."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    # The CPU is part of the key: a -march=native build from another machine sharing this
    # cache (a network home) could use instructions this one lacks.
    cpu = f"{cpu_model()} {' '.join(cpu_flags())}"
    key = hashlib.sha256(
        source.read_bytes() + " ".join(flags).encode() + version.encode() + cpu.encode()
    ).hexdigest()[:16]
    target = _cache_dir() / "native" / f"dynamic_taps-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, "-o", tmp, str(source)], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class DynamicTaps:
    """The loaded ``dynamic_taps`` library: forward, kernel gradient, input gradient."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        args = [ptr, ptr, ptr, ptr, ptr, ptr] + [i64] * 8
        for name in ("dynsr_dynamic_forward", "dynsr_dynamic_kernel_grad",
                     "dynsr_dynamic_input_grad"):
            fn = getattr(lib, name)
            fn.argtypes = args
            fn.restype = ctypes.c_int
        lib.dynsr_advise_huge_pages.argtypes = [ptr, i64]
        lib.dynsr_advise_huge_pages.restype = None
        self.advise_huge_pages = lib.dynsr_advise_huge_pages
        self.forward = lib.dynsr_dynamic_forward
        self.kernel_grad = lib.dynsr_dynamic_kernel_grad
        self.input_grad = lib.dynsr_dynamic_input_grad
        self.path = path


@cache
def _load(flags: tuple[str, ...]) -> DynamicTaps | None:
    cc = _compiler()
    if cc is None:
        return None
    try:
        return DynamicTaps(_build(cc, list(flags)))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        print(f"dynsr: native dynamic kernels unavailable ({detail.strip()[:200]}); "
              "using the torch implementation", file=sys.stderr)
        return None


def _flags() -> tuple[str, ...]:
    return ("-O3", "-fPIC", "-shared", "-pthread", "-fno-math-errno", *_march_flags())


def dynamic_taps() -> DynamicTaps | None:
    """The native tap-loop library for this machine, or None (no compiler, or disabled)."""
    if not native_enabled():
        return None
    return _load(_flags())


def build_version(source: Path) -> DynamicTaps:
    """Another version of ``dynamic_taps.c`` (an older commit's, say), built as dynsr builds
    its own, for comparing the two in one process (``benchmarks/bench_native_ab.py``)."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler (cc, gcc or clang) found")
    return DynamicTaps(_build(cc, list(_flags()), Path(source)))
