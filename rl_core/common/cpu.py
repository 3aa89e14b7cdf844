"""The CPU a run computes on: its model, the flags its math kernels dispatch on, and the
matmul precision that is fastest on it.

Machines differ in ways a model name hides (a virtual machine may report a bare "AMD EPYC"),
and oneDNN, MKL and ATen pick kernels by instruction set, so two runs are bit-comparable only
when these match. `resolve_matmul_precision` is how the default config picks bfloat16 GEMMs
only where they are faster: on CPUs with bfloat16 instructions, for layers wide enough that
the matmuls outweigh the fp32 -> bf16 conversions around them.
"""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Literal

KERNEL_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
"""CPU flags by which the math libraries choose kernels; a difference in one changes rounding."""
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
BF16_MIN_WIDTH = 256
"""Narrower networks train faster in fp32. Measured with benchmarks/matmul_precision.py on AMD
EPYC (avx512_bf16), updates/s bf16 over ieee at width = batch 64 / 128 / 256: 0.73 / 0.91 /
1.85 on one thread, 0.70 / 0.81 / 1.47 on two (bf16 autocast; oneDNN's bf16 fpmath mode,
used before, gave 1.43 and 1.30 at 256, and an Intel Xeon with AMX 1.38)."""

MatmulPrecision = Literal["bf16", "ieee"]


def cpuinfo_field(name: str) -> str | None:
    """The first `name : value` of /proc/cpuinfo (None without such a file or line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


@cache
def model() -> str:
    """The CPU's model name as the OS reports it."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


@cache
def kernel_flags() -> tuple[str, ...]:
    """Which of `KERNEL_FLAGS` this CPU has, in that order."""
    present = set((cpuinfo_field("flags") or "").split())
    return tuple(flag for flag in KERNEL_FLAGS if flag in present)


def capability() -> str:
    """The ATen kernel set torch dispatches to here (e.g. "AVX512", "AVX2")."""
    import torch  # here, not at the top: the config imports this module and stays light

    return torch.backends.cpu.get_cpu_capability()


def resolve_matmul_precision(setting: str, widest_layer: int) -> MatmulPrecision:
    """The GEMM precision a run uses; "auto" is bf16 only where it is faster than fp32.

    That needs bfloat16 instructions (without them oneDNN emulates the rounding in software:
    slower and no more accurate) and layers of at least `BF16_MIN_WIDTH`.
    """
    if setting == "auto":
        native = bool(NATIVE_BF16_FLAGS & set(kernel_flags()))
        return "bf16" if native and widest_layer >= BF16_MIN_WIDTH else "ieee"
    if setting not in ("bf16", "ieee"):
        raise ValueError(f"matmul precision must be auto, bf16 or ieee, not {setting!r}")
    return setting  # type: ignore[return-value]
