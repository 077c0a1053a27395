"""The machine description recorded beside every timing."""

from __future__ import annotations

import torch

from dynsr.hardware import cpu_supports_bf16, describe_cpu, native_bf16


def test_native_bf16_follows_torchs_cpu_checks() -> None:
    amx = torch.cpu._is_amx_tile_supported()
    avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    expected = "amx" if amx else "avx512_bf16" if avx512_bf16 else "none"
    assert native_bf16() == expected
    assert cpu_supports_bf16() == (amx or avx512_bf16)


def test_describe_cpu_names_the_machine() -> None:
    cpu = describe_cpu()
    assert set(cpu) == {"model", "logical_cpus", "simd", "native_bf16"}
    assert isinstance(cpu["model"], str) and cpu["model"].strip()
    assert cpu["logical_cpus"] >= 1
    assert cpu["simd"] == torch.backends.cpu.get_cpu_capability()
