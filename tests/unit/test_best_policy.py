"""Evaluation during training: a metric curve, the best policy kept beside the last, and a
training stream that evaluating does not disturb."""

from __future__ import annotations

import pytest
import torch

from rl_core.common.artifact_names import BEST_ACTOR_FILE
from rl_core.common.config import ConfigError, SACConfig, build_config
from rl_core.evaluation.episodes import actor_policy, evaluate
from rl_core.policy.checkpoint import load_actor
from rl_core.run.training import train

RECIPE = dict(
    total_timesteps=1000, hidden_sizes=(32, 32), batch_size=32, learning_starts=50, seed=2
)


def test_the_best_policy_is_kept_beside_the_last(tmp_path) -> None:
    config = SACConfig(**RECIPE, eval_every=200)
    result = train(config, checkpoint_path=tmp_path / "checkpoint.pt", show_progress=False)
    assert result.best is not None
    assert result.best.step in (200, 400, 600, 800, 1000)  # episode ends, every 200 steps
    best, env = load_actor(tmp_path / BEST_ACTOR_FILE)
    again = evaluate(actor_policy(best), env, config.progress_eval_seeds)
    assert again.mean == result.best.mean_return  # the weights it scored, exactly
    last = evaluate(actor_policy(result.agent.actor), env, config.progress_eval_seeds)
    assert result.best.mean_return >= last.mean  # the last one was evaluated at 1000 too


def test_evaluating_does_not_change_what_training_does() -> None:
    plain = train(SACConfig(**RECIPE), show_progress=False)
    evaluated = train(SACConfig(**RECIPE, eval_every=200), show_progress=False)
    assert plain.best is None
    assert evaluated.episode_returns == plain.episode_returns
    for before, after in zip(
        plain.agent.actor.parameters(), evaluated.agent.actor.parameters(), strict=True
    ):
        assert torch.equal(before, after)


def test_eval_every_beyond_the_run_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"eval_every \(5000\) is more than total_timesteps"):
        build_config({**RECIPE, "eval_every": 5000})
