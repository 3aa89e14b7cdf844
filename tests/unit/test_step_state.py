"""The gradient step's inputs (rl_core/sac/step_state.py): one NamedTuple, and the flat tensor
list the compiled library takes, whose order only `flatten` and `unflatten` know."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.sac import step_state
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import Batch


def _agent(**overrides: object) -> SAC:
    config = SACConfig(**{"hidden_sizes": (8, 8), "step_compiler": "torchscript", **overrides})
    return SAC(config, 3, 2, -np.ones(2), np.ones(2))


def _batch(n: int = 4) -> Batch:
    return Batch(
        torch.randn(n, 3), torch.rand(n, 2), torch.randn(n), torch.randn(n, 3), torch.zeros(n)
    )


def _storage(value: object) -> object:
    """Where each tensor of nested tuples and lists lives (a detached view of a tensor shares
    it), the other fields as they are."""
    if isinstance(value, tuple | list):
        return [_storage(item) for item in value]
    return (value.data_ptr(), tuple(value.shape)) if torch.is_tensor(value) else value


@pytest.mark.parametrize(
    "overrides", [{}, {"ent_coef": 0.1}, {"use_sde": True}, {"use_sde": True, "ent_coef": 0.1}]
)
def test_unflatten_gives_back_the_batch_and_state_flatten_took(overrides: dict) -> None:
    agent, batch = _agent(**overrides), _batch()
    state = agent.step_state
    flat = step_state.flatten(batch, state)
    layout = step_state.flat_layout(state)
    assert len({t.data_ptr() for t in flat}) == len(flat)  # each tensor once

    again_batch, again_state = step_state.unflatten(flat, layout)

    assert _storage(again_batch) == _storage(batch)
    assert _storage(again_state) == _storage(state)  # the agent's own tensors, in place
    assert layout.alpha_in_policy == agent.tune_alpha


def test_a_flat_list_that_does_not_fit_the_layout_is_refused() -> None:
    agent, batch = _agent(), _batch()
    flat = step_state.flatten(batch, agent.step_state)
    layout = step_state.flat_layout(agent.step_state)
    with pytest.raises(ValueError, match="too few"):
        step_state.unflatten(flat[:-1], layout)
    with pytest.raises(ValueError, match="too many"):
        step_state.unflatten([*flat, torch.zeros(1)], layout)


def test_a_learning_rate_change_reaches_the_state_built_once() -> None:
    agent = _agent()
    groups = (agent.step_state.critic_adam, agent.step_state.policy_adam)
    agent.set_learning_rate(1e-5)
    assert [group.lr.item() for group in groups] == [1e-5, 1e-5]
