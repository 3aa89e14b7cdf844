"""Which compiler runs SAC's gradient step (rl_core/sac_step.py), and compiling it with it.

TorchScript needs nothing beyond torch and compiles the step in about 2 s, but its
interpreter still runs every op as its own kernel. Inductor (`torch.compile`) fuses the
step's elementwise ops, bf16 casts and Adam into a few generated C++ loops: an update took
4.25 ms against TorchScript's 5.49 (Pendulum, 256x256, Intel Xeon, `python -m
benchmarks.profile_update --step-compiler inductor`, then `torchscript`).
It costs a C++ compiler and Python's headers, about 100 MiB more memory (dynamo and inductor
themselves), and a compile of about 45 s with an empty inductor cache, 6-8 s from a warm one.
So "auto" picks inductor only where it can build and the run is long enough to repay a cold
compile with a wide margin.
"""

from __future__ import annotations

import functools
import logging
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from rl_core.torchscript import quiet_torchscript

StepCompiler = Literal["torchscript", "inductor"]
INDUCTOR_MIN_UPDATES = 50_000
"""Below this many planned updates "auto" keeps TorchScript. Inductor saved 1-2 ms per update
(Intel Xeon, 256x256 networks), so a cold compile is repaid after 25,000-45,000 updates."""


@functools.cache
def inductor_can_build() -> bool:
    """Whether inductor finds a C++ compiler (`CXX`, else g++) and Python's headers here."""
    from torch._inductor import cpp_builder, exc

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return False
    return (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


def resolve_step_compiler(setting: str, planned_updates: int) -> StepCompiler:
    """The compiler a run uses: "auto" is inductor where it builds and pays off."""
    if setting == "auto":
        worth_it = planned_updates >= INDUCTOR_MIN_UPDATES
        return "inductor" if worth_it and inductor_can_build() else "torchscript"
    if setting not in ("torchscript", "inductor"):
        raise ValueError(f"step compiler must be auto, torchscript or inductor, not {setting!r}")
    return setting  # type: ignore[return-value]


class _IgnoredProfilerRange(logging.Filter):
    """Drops dynamo's warning that it skips the step's `record_function` phase names: they
    only label TorchScript profiles (benchmarks/profile_update.py), by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "will be ignored" not in record.getMessage()


@functools.cache
def compile_step(function: Callable[..., Any], compiler: StepCompiler) -> Callable[..., Any]:
    """`function` compiled by `compiler`, once per process and compiler. Inductor compiles on
    the first call, for the shapes it sees (another network size compiles again); its random
    numbers are torch's own (`fallback_random`), so both compilers draw the same noise."""
    import torch

    if compiler == "torchscript":
        with quiet_torchscript():
            return torch.jit.script(function)
    with quiet_torchscript():  # inductor's import decorates torch.utils.mkldnn with TorchScript
        import torch._inductor.compile_fx
    logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(_IgnoredProfilerRange())
    return torch.compile(
        function,
        fullgraph=True,
        dynamic=False,
        options={"cpp_wrapper": True, "fallback_random": True},
    )
