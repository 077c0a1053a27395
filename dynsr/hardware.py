"""What the CPU offers, for choosing a precision and for naming the machine beside a timing.

Sessions of this project have run on different 2-core machines (an AMD EPYC; an Intel Xeon
with AMX, where a 64-channel 3x3 convolution ran 7.7x faster in bf16 than in fp32), so every
measured second is recorded with :func:`describe_cpu`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix instructions (AVX-512 BF16 or AMX); without them bf16 is slower."""
    return native_bf16() != "none"


def native_bf16() -> str:
    """``"amx"``, ``"avx512_bf16"`` or ``"none"``: the CPU's fastest native bf16 path.

    ``"none"`` as well when PyTorch was told to dispatch below AVX-512
    (``ATEN_CPU_CAPABILITY=avx2``) or oneDNN was capped under AVX-512 BF16
    (``ONEDNN_MAX_CPU_ISA``): the bf16 kernels then run emulated, several times slower than
    fp32 (DyConvSR x2 at 640×360, measured under such a cap: 5.8x slower), so the defaults
    must not choose them.
    """
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX"):
        return "none"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if cap not in ("ALL", "DEFAULT", "") and not (cap.startswith("AVX512_CORE_BF16")
                                                  or cap.startswith("AVX512_CORE_AMX")
                                                  or cap.startswith("AVX10")):
        return "none"
    cpu = torch.cpu
    for kind, check in (("amx", "_is_amx_tile_supported"),
                        ("avx512_bf16", "_is_avx512_bf16_supported")):
        if getattr(cpu, check, lambda: False)():
            return kind
    return "none"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of the instruction sets that decide dynsr's speed (:data:`SPEED_FLAGS`) the CPU
    lists in ``/proc/cpuinfo`` (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [flag for flag in SPEED_FLAGS if flag in have]
    except OSError:
        pass
    return []


def describe_cpu() -> dict[str, object]:
    """The machine a timing was taken on: model, logical CPUs, PyTorch's SIMD level, bf16."""
    return {"model": cpu_model(), "logical_cpus": os.cpu_count(),
            "simd": torch.backends.cpu.get_cpu_capability(), "native_bf16": native_bf16()}


def timing_context(threads: int | None = None) -> dict[str, object]:
    """Everything a speed figure is read against: :func:`describe_cpu`, the CPU's speed flags,
    the thread count, PyTorch's version and the two caps that emulate a smaller CPU
    (``ATEN_CPU_CAPABILITY`` lowers PyTorch's SIMD dispatch, ``ONEDNN_MAX_CPU_ISA`` oneDNN's
    ISA), so that an AVX2 emulation on a bigger CPU is never mistaken for an AVX2 machine."""
    return {**describe_cpu(), "flags": cpu_flags(),
            "threads": torch.get_num_threads() if threads is None else threads,
            "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY"),
            "onednn_max_cpu_isa_env": os.environ.get("ONEDNN_MAX_CPU_ISA"),
            "torch": torch.__version__}
