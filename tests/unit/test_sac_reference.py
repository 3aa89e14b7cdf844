"""`step_compiler: reference`: a run trains with the algorithm's definition
(rl_core/sac/sac_reference.py), and its checkpoints are the fast step's. That the two steps are
equal is tests/unit/test_sac_step.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import load_checkpoint
from rl_core.run.training import train
from rl_core.sac import sac_reference
from rl_core.sac.agent import SAC

SMALL = dict(
    hidden_sizes=(32, 32),
    batch_size=32,
    learning_starts=50,
    seed=4,
    torch_threads=1,
    learning_rate_schedule="linear",
    step_compiler="reference",
)


def _adam_steps(optimizer_state: dict) -> set[float]:
    return {float(state["step"]) for state in optimizer_state["state"].values()}


def test_a_reference_run_updates_checkpoints_and_resumes(tmp_path) -> None:
    config = SACConfig(total_timesteps=300, **SMALL)
    result = train(config, checkpoint_path=tmp_path / "c.pt", show_progress=False)
    agent = result.agent
    assert isinstance(agent.policy_optimizer, sac_reference.Adam)
    # The linear schedule reached the reference's optimizers: its rate at the run's end.
    for optimizer in (agent.critic_optimizer, agent.policy_optimizer):
        assert optimizer.lr == config.learning_rate_at(300) != config.learning_rate
    state = load_checkpoint(result.checkpoint_path)["agent"]
    for name in ("critic_optimizer", "policy_optimizer"):
        assert _adam_steps(state[name]) == {float(config.planned_updates)}, name
    # Polyak moved the targets towards the critics without reaching them.
    assert not torch.equal(agent.critic_target.weights[0], agent.critic.weights[0])
    assert agent.log_alpha.item() != 0.0  # tuned away from log(1)

    longer = config.model_copy(update={"total_timesteps": 400})
    resumed = train(longer, resume_from=result.checkpoint_path, show_progress=False)
    assert resumed.start_step == 300 and resumed.steps == 400
    steps = _adam_steps(resumed.agent.critic_optimizer.state_dict())
    assert steps == {float(longer.planned_updates)}


def test_a_reference_checkpoint_loads_into_the_fast_step(tmp_path) -> None:
    """Both keep torch.optim.Adam's state format: moments and step counts carry over."""
    config = SACConfig(total_timesteps=120, **SMALL)
    result = train(config, checkpoint_path=tmp_path / "c.pt", show_progress=False)
    fast = SACConfig(**{**SMALL, "total_timesteps": 120, "step_compiler": "torchscript"})
    agent = SAC(fast, 3, 1, -2.0 * np.ones(1), 2.0 * np.ones(1))  # Pendulum's shapes
    agent.load_state_dict(load_checkpoint(result.checkpoint_path)["agent"])
    expected = result.agent.critic_optimizer.state_dict()["state"]
    loaded = agent.critic_optimizer.state_dict()["state"]
    assert loaded.keys() == expected.keys()
    for index, moments in loaded.items():
        torch.testing.assert_close(moments["exp_avg_sq"], expected[index]["exp_avg_sq"])
        assert float(moments["step"]) == config.planned_updates


def test_the_reference_computes_in_fp32() -> None:
    assert SACConfig(step_compiler="reference").effective_matmul_precision == "ieee"
    with pytest.raises(ValidationError, match='"reference" computes in fp32'):
        SACConfig(step_compiler="reference", matmul_precision="bf16")
