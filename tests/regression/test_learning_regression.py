"""A refactor that makes training nondeterministic fails here, on every machine.

Bit-identical results are only promised where CPU kernels, library versions, threads and
precision all match, so this test compares a machine with itself: the same small config is
trained twice, each time in a fresh interpreter, and the two runs' final actor weights and
evaluation returns must be equal bit for bit. It runs once with TorchScript's step and once
with inductor's (compiled ahead of time and cached on disk: the second run loads what the
first compiled). Whether SAC still *learns*, on any CPU, is the learning guard's job
(test_learning_guard.py).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from rl_core.common.config import SACConfig
from rl_core.evaluation.episodes import evaluate
from rl_core.run.training import train

CONFIG = {
    "total_timesteps": 1_500,
    "learning_starts": 500,
    "hidden_sizes": (64, 64),
    "batch_size": 64,
    "seed": 7,
    "torch_threads": 1,
    "eval_seeds": (1000, 1001, 1002),
}
"""1,000 updates: enough for any drift between two runs to reach the weights and returns."""


def trained(step_compiler: str) -> tuple[dict[str, bytes], list[float]]:
    """Final actor weights (their bytes) and eval returns of CONFIG trained from scratch in
    this process. Bytes, not tensors: torch would share a tensor's memory with the parent
    through the child, which exits once it has answered."""
    config = SACConfig(**CONFIG, step_compiler=step_compiler)
    agent = train(config, show_progress=False, switch_at=0).agent  # inductor from the start
    returns = evaluate(agent.act, config.env, config.eval_seeds).returns
    weights = {
        name: t.detach().contiguous().numpy().tobytes()
        for name, t in agent.actor.state_dict().items()
    }
    return weights, returns


@pytest.mark.slow
@pytest.mark.parametrize("step_compiler", ["torchscript", "inductor"])
def test_two_fresh_runs_on_this_machine_are_bit_identical(step_compiler: str) -> None:
    # Spawned, one run per process. TorchScript runs both at once (one torch thread each, one
    # per core); inductor one after the other, so the second loads the step the first compiled.
    workers = 1 if step_compiler == "inductor" else 2
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn, max_tasks_per_child=1) as pool:
        first, second = pool.map(trained, [step_compiler] * 2)
    (weights, returns), (weights_again, returns_again) = first, second
    assert returns == returns_again
    assert weights.keys() == weights_again.keys()
    for name, data in weights.items():
        assert data == weights_again[name], f"actor {name} differs between the two runs"
