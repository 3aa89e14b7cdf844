"""The step compiled ahead of time (rl_core/aot_step.py): cached per machine and shape, built
in a child process, and run by a training process that never loads dynamo."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from rl_core import aot_step
from rl_core.agent import SAC
from rl_core.buffer import Batch
from rl_core.config import SACConfig


def _agent(**overrides: object) -> SAC:
    config = SACConfig(
        **{"hidden_sizes": (16, 16), "step_compiler": "inductor", "batch_size": 8, **overrides}
    )
    torch.manual_seed(0)
    return SAC(config, 3, 1, -np.ones(1), np.ones(1))


def _batch(n: int = 8) -> Batch:
    return Batch(
        torch.randn(n, 3), torch.rand(n, 1), torch.randn(n), torch.randn(n, 3), torch.zeros(n)
    )


def test_a_compiled_step_is_reused_from_the_cache_not_built_again(monkeypatch) -> None:
    _agent().update(_batch())  # built (or found) once for this shape
    built: list[tuple[object, ...]] = []
    build = aot_step.build

    def recorded(*args: object) -> None:
        built.append(args)
        build(*args)

    monkeypatch.setattr(aot_step, "build", recorded)
    agent = _agent()
    stats = agent.update(_batch())
    assert built == []
    assert torch.isfinite(stats.critic_loss)
    # Another shape or another compiled-in number is another library.
    _agent(gamma=0.9).update(_batch())
    _agent().update(_batch(n=16))
    assert len(built) == 2
    assert built[0][2] != built[1][2]  # different package paths


def _modules_after_training(compiler: str) -> tuple[str, set[str]]:
    """What ran the step of a short training run in a fresh process, and the modules that
    process imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from rl_core.config import SACConfig
        from rl_core.training import train

        config = SACConfig(total_timesteps=300, learning_starts=100, hidden_sizes=(16, 16),
                           batch_size=16, step_compiler="{compiler}")
        agent = train(config, show_progress=False).agent
        print(type(agent._step).__name__, " ".join(sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    step, *modules = done.stdout.strip().splitlines()[-1].split()
    return step, set(modules)


def test_the_training_process_loads_no_compiler_to_run_the_compiled_step() -> None:
    """The library is built in a child process: training with it imports nothing that
    training with TorchScript does not (torch.compile would add ~700 modules, inductor's
    code generators among them, and ~100 MiB), and neither imports dynamo, inductor or sympy
    (torch.optim.Adam would: rlops keeps Adam's state itself, rl_core/adam_state.py)."""
    step, with_library = _modules_after_training("inductor")
    assert step == "CompiledStep"
    _, with_torchscript = _modules_after_training("torchscript")
    for modules in (with_library, with_torchscript):
        loaded = [n for n in modules if n.startswith(("torch._dynamo", "torch._inductor", "sympy"))]
        assert loaded == []
    extra = with_library - with_torchscript
    compiler_stack = ("torch._inductor", "torch._dynamo", "torch.export", "torch.fx", "sympy")
    assert [name for name in extra if name.startswith(compiler_stack)] == []
    assert len(extra) < 10, extra


def test_a_failed_build_says_which_compiler_and_how_to_do_without(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(RuntimeError, match="step_compiler=torchscript needs no C\\+\\+ compiler"):
        _agent(hidden_sizes=(8, 8)).update(_batch())
    assert list(tmp_path.rglob("*.pt2")) == []  # nothing half-written is left for a later run
