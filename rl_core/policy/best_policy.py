"""Evaluation during training (`eval_every`) and the best policy it finds.

SAC's return often peaks and then oscillates (Pendulum with lr 1e-3 does), so the last
policy is not always the best one. Every `eval_every` env steps, at the next episode end,
the deterministic policy plays one episode per `progress_eval_seeds` seed (seeds apart from
the gate's `eval_seeds`, so choosing the best one does not flatter the gate's figure); the
mean is logged as a metric curve, and the actor's weights are kept whenever it is the best so
far. Evaluating touches neither the training env nor any training RNG, and the best weights
travel in checkpoints, so a resumed run keeps the same best as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rl_core.common.config import SACConfig
from rl_core.evaluation.episodes import actor_policy, evaluate
from rl_core.sac.networks import Actor

PROGRESS_EVAL_METRIC = "progress_eval_mean_return"


class BestPolicy:
    """The best mean return seen by the evaluations during training, its step and weights."""

    def __init__(self) -> None:
        self.mean_return = -math.inf
        self.step = 0
        self.actor_state: dict[str, torch.Tensor] | None = None

    def evaluate(self, config: SACConfig, actor: Actor, step: int) -> float:
        """Score the actor on the progress seeds; keep its weights if it is the best yet."""
        result = evaluate(actor_policy(actor), config.env, config.progress_eval_seeds)
        if result.mean > self.mean_return:
            self.mean_return, self.step = result.mean, step
            self.actor_state = {k: v.detach().clone() for k, v in actor.state_dict().items()}
        return result.mean

    def actor(self, like: Actor) -> Actor | None:
        """A copy of `like` holding the best weights (None before the first evaluation)."""
        if self.actor_state is None:
            return None
        best = Actor.from_spec(like.spec)
        best.load_state_dict(self.actor_state)
        return best

    def state_dict(self) -> dict[str, Any]:
        return {"mean_return": self.mean_return, "step": self.step, "actor": self.actor_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean_return, self.step = float(state["mean_return"]), int(state["step"])
        self.actor_state = state["actor"]
