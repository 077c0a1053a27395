"""The machine description recorded beside every timing."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from dynsr.hardware import cpu_supports_bf16, describe_cpu, native_bf16


def test_native_bf16_follows_torchs_cpu_checks() -> None:
    capped = torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX")
    amx = torch.cpu._is_amx_tile_supported() and not capped
    avx512_bf16 = torch.cpu._is_avx512_bf16_supported() and not capped
    expected = "amx" if amx else "avx512_bf16" if avx512_bf16 else "none"
    assert native_bf16() == expected
    assert cpu_supports_bf16() == (amx or avx512_bf16)


def test_describe_cpu_names_the_machine() -> None:
    cpu = describe_cpu()
    assert set(cpu) == {"model", "logical_cpus", "simd", "native_bf16"}
    assert isinstance(cpu["model"], str) and cpu["model"].strip()
    assert cpu["logical_cpus"] >= 1
    assert cpu["simd"] == torch.backends.cpu.get_cpu_capability()


def test_an_isa_cap_turns_native_bf16_off() -> None:
    """Under ATEN_CPU_CAPABILITY=avx2 / ONEDNN_MAX_CPU_ISA=AVX2 (an AVX2 machine emulated on a
    bigger CPU) bf16 runs emulated, so the defaults must pick fp32."""
    code = "import dynsr.hardware as h, dynsr.api as a, torch; " \
           "print(h.native_bf16(), a.default_precision(torch.device('cpu')))"
    for env in ({"ATEN_CPU_CAPABILITY": "avx2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout.split()
        assert out == ["none", "fp32"], env


def test_timing_context_names_the_machine_and_the_caps(monkeypatch):
    from dynsr.hardware import timing_context

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    context = timing_context(3)
    assert context["threads"] == 3 and context["onednn_max_cpu_isa_env"] == "AVX2"
    assert {"model", "simd", "native_bf16", "flags", "torch"} <= set(context)
