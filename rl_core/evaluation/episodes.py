"""Deterministic evaluation on a fixed list of env seeds: the number every gate compares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rl_core.common.tracking import Tracker
from rl_core.envs.spec import EnvSpec, make_env
from rl_core.sac.networks import Actor

Policy = Callable[[np.ndarray], np.ndarray]
"""Maps one observation to one env action (already in the env's bounds)."""


@dataclass(frozen=True)
class EvalResult:
    """Returns of one deterministic episode per seed, and their summary."""

    mean: float
    std: float
    returns: list[float]
    seeds: list[int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


EVAL_MEAN_RETURN = "eval_mean_return"
"""The metric every gate reads: mean deterministic return on the run's eval seeds."""
EVAL_STD_RETURN = "eval_std_return"
EVAL_RETURN_CI_LOW = "eval_mean_return_ci_low"
EVAL_RETURN_CI_HIGH = "eval_mean_return_ci_high"
"""Ends of the mean return's confidence interval, as the reward gate states it."""
EVALUATION_ARTIFACT = "evaluation/returns.json"
"""Where a tracked run keeps its per-episode evaluation returns (what `reproduce` compares)."""


def log_evaluation(tracker: Tracker, result: EvalResult, step: int) -> None:
    """Record an evaluation on a tracker: summary metrics plus the per-episode returns."""
    tracker.log_metrics({EVAL_MEAN_RETURN: result.mean, EVAL_STD_RETURN: result.std}, step)
    tracker.log_json(result.as_dict(), EVALUATION_ARTIFACT)


def actor_policy(actor: Actor) -> Policy:
    """A trained actor as an `evaluate()` policy: its deterministic action, one obs at a time."""

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> np.ndarray:
        observation = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        return actor.deterministic_action(observation)[0].numpy()

    return policy


def evaluate(policy: Policy, env: EnvSpec | str, seeds: Sequence[int]) -> EvalResult:
    """Run one episode per seed with `policy` and summarise the undiscounted returns."""
    env = make_env(env)
    returns: list[float] = []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            episode_return, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                episode_return += float(reward)
                done = terminated or truncated
            returns.append(episode_return)
    finally:
        env.close()
    values = np.asarray(returns, dtype=np.float64)
    return EvalResult(float(values.mean()), float(values.std()), returns, [int(s) for s in seeds])
