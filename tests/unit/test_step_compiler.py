"""How "auto" picks the gradient step's compiler, and the update count it decides on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rl_core.common.config import SACConfig
from rl_core.run.training import train
from rl_core.sac import step_compiler
from rl_core.sac.agent import SAC, UpdateStats
from rl_core.sac.buffer import Batch
from rl_core.sac.step_compiler import INDUCTOR_MIN_UPDATES, resolve_step_compiler


@pytest.mark.parametrize(
    ("can_build", "updates", "expected"),
    [
        (True, INDUCTOR_MIN_UPDATES, "inductor"),
        (True, INDUCTOR_MIN_UPDATES - 1, "torchscript"),  # too short to repay the compile
        (False, 10 * INDUCTOR_MIN_UPDATES, "torchscript"),  # no C++ compiler
    ],
)
def test_auto_compiles_with_inductor_only_long_runs_it_can_build(
    monkeypatch, can_build: bool, updates: int, expected: str
) -> None:
    monkeypatch.setattr(step_compiler, "inductor_can_build", lambda: can_build)
    assert resolve_step_compiler("auto", updates) == expected
    assert resolve_step_compiler("torchscript", 10 * updates) == "torchscript"
    assert resolve_step_compiler("inductor", 1) == "inductor"  # an explicit choice is kept


def test_without_a_cpp_compiler_inductor_cannot_build(monkeypatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    step_compiler.inductor_can_build.cache_clear()
    try:
        assert not step_compiler.inductor_can_build()
        assert resolve_step_compiler("auto", 10 * INDUCTOR_MIN_UPDATES) == "torchscript"
    finally:
        step_compiler.inductor_can_build.cache_clear()


def test_an_unknown_compiler_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="auto, torchscript, inductor or reference, not 'tvm'"):
        resolve_step_compiler("tvm", 1)
    with pytest.raises(ValidationError, match="step_compiler"):
        SACConfig(step_compiler="tvm")


def test_planned_updates_counts_the_updates_the_training_loop_takes(monkeypatch) -> None:
    config = SACConfig(
        total_timesteps=301,
        learning_starts=50,
        train_freq=3,
        gradient_steps=2,
        hidden_sizes=(16, 16),
        batch_size=16,
        step_compiler="torchscript",
    )
    updates = 0
    update = SAC.update

    def counted(self: SAC, batch: Batch) -> UpdateStats:
        nonlocal updates
        updates += 1
        return update(self, batch)

    monkeypatch.setattr(SAC, "update", counted)
    train(config, show_progress=False)
    assert updates == config.planned_updates == 2 * (301 // 3 - 50 // 3)
