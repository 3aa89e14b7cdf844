"""One SAC gradient step, piece by piece: Polyak targets, the twin-critic minimum, the
direction alpha moves, and the terminal mask (also end to end on an env that terminates)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl_core.common.config import SACConfig
from rl_core.run.training import train
from rl_core.sac import sac_step
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import Batch

OBS_DIM, ACT_DIM = 3, 1


def _agent(**overrides: object) -> SAC:
    config = SACConfig(**{"hidden_sizes": (16, 16), **overrides})
    torch.manual_seed(0)
    return SAC(config, OBS_DIM, ACT_DIM, np.array([-2.0]), np.array([2.0]))


def _batch(n: int = 32, terminated: float = 0.0) -> Batch:
    generator = torch.Generator().manual_seed(1)
    return Batch(
        obs=torch.randn(n, OBS_DIM, generator=generator),
        actions=torch.rand(n, ACT_DIM, generator=generator) * 2 - 1,
        rewards=torch.randn(n, generator=generator),
        next_obs=torch.randn(n, OBS_DIM, generator=generator),
        terminated=torch.full((n,), terminated),
    )


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("tau", [0.005, 0.5, 1.0])
def test_targets_move_a_tau_step_towards_the_critics(tau: float) -> None:
    agent = _agent(tau=tau)
    targets_before = _params(agent.critic_target)
    agent.update(_batch())
    critics_after = _params(agent.critic)
    for before, critic, after in zip(
        targets_before, critics_after, agent.critic_target.parameters(), strict=True
    ):
        torch.testing.assert_close(after, before + tau * (critic - before))
    assert any(not torch.equal(b, c) for b, c in zip(targets_before, critics_after, strict=True))


def _constant_critics(agent: SAC, values: tuple[float, float]) -> None:
    """Make target critic i output values[i] whatever the input."""
    with torch.no_grad():
        agent.critic_target.weights[-1].zero_()
        for i, value in enumerate(values):
            agent.critic_target.biases[-1][i].fill_(value)


@pytest.mark.parametrize("values", [(5.0, 3.0), (3.0, 5.0)])
def test_the_bootstrap_target_takes_the_smaller_critic(values: tuple[float, float]) -> None:
    agent, batch = _agent(gamma=0.9), _batch()
    _constant_critics(agent, values)
    alpha = torch.tensor([0.2])
    settings = agent._settings
    with torch.no_grad():
        head = sac_step.mlp_forward(batch.next_obs, agent.step_state.actor, settings.actor_bf16)[-1]
        next_action = sac_step.squashed_sample(head, torch.randn_like(head[:, :1]), settings)
        target = sac_step.bootstrap_target(
            batch.next_obs,
            next_action,
            batch.rewards,
            batch.terminated,
            agent.step_state.critic_target,
            alpha,
            settings,
        )
    expected = batch.rewards + 0.9 * (min(values) - 0.2 * next_action.log_prob)
    torch.testing.assert_close(target, expected)


def test_the_bootstrap_target_is_taken_at_the_next_observation() -> None:
    """The critics regress on r + gamma * V(s'): two batches that differ only in s' must move
    them differently (the same noise drawn in both)."""
    batch = _batch()
    critics = []
    for next_obs in (batch.next_obs, batch.next_obs + 1.0):
        agent = _agent()
        torch.manual_seed(5)
        agent.update(batch._replace(next_obs=next_obs))
        critics.append(_params(agent.critic))
    assert any(not torch.equal(a, b) for a, b in zip(*critics, strict=True))


def test_a_terminal_transition_does_not_bootstrap() -> None:
    rewards = torch.tensor([1.0, 1.0])
    terminated = torch.tensor([1.0, 0.0])
    target = sac_step.soft_q_target(
        rewards, terminated, torch.tensor([10.0, 10.0]), torch.zeros(2), torch.tensor([0.5]), 0.9
    )
    assert target.tolist() == [1.0, 1.0 + 0.9 * 10.0]


@pytest.mark.parametrize(("target_entropy", "direction"), [(5.0, 1), (-50.0, -1)])
def test_alpha_moves_towards_the_entropy_target(target_entropy: float, direction: int) -> None:
    """A 1-D squashed policy's entropy is at most log 2: below +5, far above -50."""
    agent = _agent(target_entropy=target_entropy)
    before = agent.log_alpha.detach().item()
    for _ in range(3):
        agent.update(_batch())
    assert (agent.log_alpha.detach().item() - before) * direction > 0


class OneStepBandit(gym.Env):
    """Every episode is one step with reward 1 - a^2, then it terminates: Q(s, a) = 1 - a^2."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray):
        reward = 1.0 - float(action[0]) ** 2
        return np.zeros(1, np.float32), reward, True, False, {}


BANDIT_ID = "rlops-test/OneStepBandit-v0"
gym.register(BANDIT_ID, entry_point=OneStepBandit)


def test_on_an_env_that_terminates_q_learns_the_reward_without_bootstrapping() -> None:
    """With gamma 0.99, a mask that let terminal steps bootstrap would push Q(s, 0) far
    above 1 (towards 100); with the mask, Q(s, a) converges to the one-step reward."""
    config = SACConfig(
        env_id=BANDIT_ID,
        total_timesteps=1_500,
        hidden_sizes=(32, 32),
        batch_size=64,
        learning_starts=100,
    )
    result = train(config, show_progress=False)
    assert len(result.episode_returns) == 1_500  # every step ended an episode
    obs = torch.zeros(5, 1)
    actions = torch.tensor([[-1.0], [-0.5], [0.0], [0.5], [1.0]])
    with torch.no_grad():
        q = result.agent.critic(obs, actions)  # (2 critics, 5 actions)
    expected = 1.0 - actions.squeeze(1) ** 2
    assert (q - expected).abs().max() < 0.25, q


def test_an_update_reports_its_stats_by_name() -> None:
    agent = _agent()
    alpha_before = agent.log_alpha.exp().item()
    stats = agent.update(_batch())
    assert stats._fields == ("critic_loss", "actor_loss", "alpha")
    assert stats.alpha.item() == pytest.approx(alpha_before)  # the value the step used
    assert stats.critic_loss.item() > 0.0
    assert not any(value.requires_grad for value in stats)
    assert agent.log_alpha.exp().item() != alpha_before  # alpha itself moved on


def test_an_agent_resumes_from_a_state_saved_before_its_first_update() -> None:
    """Adam's state exists from the start; a checkpoint without it (as torch.optim saves
    one before any step) still loads, and the next update runs."""
    agent = _agent()
    state = agent.state_dict()
    for name in ("policy_optimizer", "critic_optimizer"):
        state[name]["state"] = {}
    resumed = _agent()
    resumed.load_state_dict(state)
    resumed.update(_batch())
    assert [step.item() for step in resumed.policy_optimizer.steps] == [1.0] * len(
        resumed.step_state.policy_adam.params
    )
