"""Which compiler runs SAC's gradient step (rl_core/sac/sac_step.py).

TorchScript needs nothing beyond torch and compiles the step in about 2 s, but its
interpreter still runs every op as its own kernel. Inductor fuses the step's elementwise
ops, bf16 casts and Adam into a few generated C++ loops; rlops runs it ahead of time
(rl_core/sac/aot_step.py: compiled in a child process, cached on disk, loaded as a library).
An update took 1.4-1.7 ms against TorchScript's 2.5 (Pendulum, 256x256, bf16, AMD EPYC).
It costs a C++ compiler and Python's headers, and one compile per machine and step shape:
13 s with empty caches on that machine. So "auto" picks inductor where it can build and the
run is long enough to repay even a first compile. A training run does not wait for that
compile: it runs in the background while the updates run TorchScript's step, and the run
switches to the compiled one when it is ready, recording the env step of the switch
(rl_core/run/training.py; the compile and its machine-wide lock: rl_core/sac/aot_step.py).
"reference" compiles nothing: it runs the algorithm's definition (rl_core/sac/sac_reference.py)
with autograd, eagerly: about half the updates/s (benchmarks/reference_vs_fast.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the config imports this module: torch is imported only to compile
    from rl_core.sac.buffer import Batch
    from rl_core.sac.sac_step import StepSettings
    from rl_core.sac.step_state import StepState

StepCompiler = Literal["torchscript", "inductor", "reference"]
INDUCTOR_MIN_UPDATES = 15_000
"""Below this many planned updates "auto" keeps TorchScript. Inductor saved about 1 ms per
update (AMD EPYC, 256x256, bf16), so a first compile (13 s there) is repaid within 15,000
updates, and a cached one at once."""


@functools.cache
def inductor_can_build() -> bool:
    """Whether inductor would find a C++ compiler (`CXX`, else g++) and Python's headers here.
    Asked without importing inductor, which would cost the training process ~70 MiB."""
    compiler = shutil.which(os.environ.get("CXX") or "g++")
    return compiler is not None and (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


def resolve_step_compiler(setting: str, planned_updates: int) -> StepCompiler:
    """The compiler a run uses: "auto" is inductor where it builds and pays off."""
    if setting == "auto":
        worth_it = planned_updates >= INDUCTOR_MIN_UPDATES
        return "inductor" if worth_it and inductor_can_build() else "torchscript"
    if setting not in ("torchscript", "inductor", "reference"):
        raise ValueError(
            f"step compiler must be auto, torchscript, inductor or reference, not {setting!r}"
        )
    return setting  # type: ignore[return-value]


def compile_step(
    compiler: StepCompiler, batch: Batch, state: StepState, settings: StepSettings
) -> Callable[..., Any]:
    """`sac_step.gradient_step` compiled by `compiler`, called as it is. TorchScript compiles
    it once per process for every shape; inductor once per machine for the shapes of this
    batch and state, with these settings."""
    if compiler == "torchscript":
        return scripted_step()
    from rl_core.sac import aot_step

    return aot_step.compiled_step(batch, state, settings)


@functools.cache
def scripted_step() -> Callable[..., Any]:
    """`sac_step.gradient_step` under TorchScript, scripted once per process (for all shapes)."""
    import torch

    from rl_core.sac import sac_step
    from rl_core.sac.torchscript import quiet_torchscript

    with quiet_torchscript():
        return torch.jit.script(sac_step.gradient_step)
