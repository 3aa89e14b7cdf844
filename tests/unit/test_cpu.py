"""The CPU facts a run records, and how "auto" picks the matmul precision from them."""

from __future__ import annotations

import pytest

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.run.lineage import numeric_fingerprint


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (("avx2", "fma", "avx512f", "avx512_bf16"), "bf16"),  # AMD EPYC (Zen 4)
        (("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), "bf16"),  # Xeon with AMX
        (("avx2", "fma", "avx512f"), "ieee"),  # AVX-512 without bf16: emulation is slower
        (("avx2", "fma"), "ieee"),
        ((), "ieee"),  # no /proc/cpuinfo
    ],
)
def test_auto_uses_bf16_only_with_bf16_instructions(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(cpu, "kernel_flags", lambda: flags)
    assert cpu.resolve_matmul_precision("auto", 256) == expected
    assert cpu.resolve_matmul_precision("ieee", 256) == "ieee"  # an explicit choice is kept
    assert cpu.resolve_matmul_precision("bf16", 64) == "bf16"


@pytest.mark.parametrize(("width", "expected"), [(64, "ieee"), (255, "ieee"), (256, "bf16")])
def test_auto_keeps_narrow_networks_in_fp32(monkeypatch, width, expected) -> None:
    """Below 256 units the bf16 conversions cost more than the faster matmuls save."""
    monkeypatch.setattr(cpu, "kernel_flags", lambda: ("avx512f", "avx512_bf16"))
    assert cpu.resolve_matmul_precision("auto", width) == expected
    assert SACConfig(hidden_sizes=(width, 32)).effective_matmul_precision == expected


def test_an_unknown_precision_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="auto, bf16 or ieee, not 'fp8'"):
        cpu.resolve_matmul_precision("fp8", 256)


def test_kernel_flags_are_known_flags_in_a_stable_order() -> None:
    flags = cpu.kernel_flags()
    assert list(flags) == [f for f in cpu.KERNEL_FLAGS if f in flags]


def test_the_fingerprint_separates_cpus_that_share_a_model_name(monkeypatch) -> None:
    """Two VMs both reporting "AMD EPYC" but with different kernel flags are not comparable."""
    monkeypatch.setattr(cpu, "model", lambda: "AMD EPYC")
    monkeypatch.setattr(cpu, "kernel_flags", lambda: ("avx2", "avx512f", "avx512_bf16"))
    zen4 = numeric_fingerprint(SACConfig())
    monkeypatch.setattr(cpu, "kernel_flags", lambda: ("avx2",))
    zen2 = numeric_fingerprint(SACConfig())
    assert zen4 != zen2
    assert (zen4["matmul_precision"], zen2["matmul_precision"]) == ("bf16", "ieee")
