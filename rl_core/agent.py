"""Soft Actor-Critic: the networks, their optimizers and one gradient step.

The loss terms are Stable-Baselines3's (log-probs in the squashed space, alpha tuned on
log-alpha), so results compare with RL-Zoo. The update stays on tensors end to end: no
`.item()`, no numpy round trips.
"""

from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.profiler import record_function

from rl_core.buffer import Batch
from rl_core.config import SACConfig
from rl_core.networks import Actor, TwinQCritic

CRITIC_PHASE, POLICY_PHASE, TARGET_PHASE = "sac.critic_step", "sac.policy_step", "sac.target_update"
"""The update's phases as torch.profiler names them (benchmarks/profile_update.py reads them)."""


def _adam(params: Any, lr: float) -> torch.optim.Adam:
    """Adam with the fused CPU kernel: one call updates every parameter."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def soft_q_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q: torch.Tensor,
    next_log_prob: torch.Tensor,
    alpha: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """r + gamma * (1 - terminated) * (Q'(s', a') - alpha * log pi(a'|s')).

    A terminal transition does not bootstrap; a truncated one (time limit) does, because its
    `terminated` flag is 0.
    """
    return rewards + gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)


def actor_objective(
    q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """Minimised by the actor: alpha * log pi(a|s) - Q(s, a), i.e. maximise Q plus entropy."""
    return (alpha * log_prob - q_pi).mean()


def alpha_objective(
    log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float
) -> torch.Tensor:
    """Minimised by log-alpha: alpha grows while the policy's entropy is below the target."""
    return -(log_alpha * (log_prob + target_entropy)).mean()


class UpdateStats(NamedTuple):
    """What one gradient step reports: detached scalar tensors, named as they are logged.

    Tensors, not floats: the training loop sums them over a log window without a
    tensor-to-Python conversion per update.
    """

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha: torch.Tensor


class SAC:
    """Actor, twin critics with Polyak targets, and (optionally tuned) entropy coefficient."""

    def __init__(
        self,
        config: SACConfig,
        obs_dim: int,
        act_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
    ) -> None:
        self.config = config
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        obs_clip = config.obs_clip if config.normalize_obs else None
        self.actor = Actor(obs_dim, act_dim, config.hidden_sizes, low, high, obs_clip)
        # The critics see observations as the actor does: through its normalizer (or as is).
        self.normalize = self.actor.normalizer
        self.critic = TwinQCritic(obs_dim, act_dim, config.hidden_sizes)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = _adam(self.critic.parameters(), config.learning_rate)

        self.tune_alpha = config.ent_coef == "auto"
        initial_alpha = config.ent_coef_init if self.tune_alpha else float(config.ent_coef)
        self.log_alpha = torch.tensor([math.log(initial_alpha)], requires_grad=self.tune_alpha)
        self.target_entropy = (
            -float(act_dim) if config.target_entropy == "auto" else float(config.target_entropy)
        )
        # Actor and log-alpha step together: one backward, one fused Adam call.
        self._policy_params = [*self.actor.parameters()] + (
            [self.log_alpha] if self.tune_alpha else []
        )
        self.policy_optimizer = _adam(self._policy_params, config.learning_rate)
        self._critic_params = list(self.critic.parameters())
        self.bf16 = config.effective_matmul_precision == "bf16"
        self._target_params = list(self.critic_target.parameters())

    def _forward_precision(self) -> torch.autocast:
        """The forward passes of an update, with hidden-layer GEMMs in bfloat16 when the
        config chose bf16 (networks keep output layers in fp32).

        bf16 tensors, not oneDNN's bf16 mode for fp32 tensors: that converts the weights on
        every call and halves the gain (benchmarks/matmul_precision.py). Each pass opens its
        own region because autocast caches the converted weights until the outermost region
        exits, and an optimizer step in between would leave that cache stale.
        """
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    @torch.inference_mode()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """A stochastic action for data collection, squashed to [-1, 1] (the replay space)."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        mean, log_std = self.actor(obs_tensor)
        return torch.tanh(mean + torch.randn_like(mean) * log_std.exp())[0].numpy()

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic evaluation action tanh(mean), in the env's bounds."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        return self.actor.deterministic_action(obs_tensor)[0].numpy()

    def update(self, batch: Batch) -> UpdateStats:
        """One gradient step on a batch; what it measured, by name.

        Critics first, then actor and entropy coefficient together (CleanRL's order). The
        alpha used everywhere in a step is its value before that step, as in SB3.
        """
        alpha = self.log_alpha.detach().exp()
        with record_function(CRITIC_PHASE):
            critic_loss = self.critic_step(batch, alpha)
        with record_function(POLICY_PHASE):
            actor_loss = self.policy_step(batch, alpha)
        with record_function(TARGET_PHASE):
            self.update_targets()
        return UpdateStats(critic_loss, actor_loss, alpha[0])

    def bootstrap_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """The critics' regression target, from the target critics and a fresh next action.

        No gradient flows through it: the critics chase a fixed target (semi-gradient TD).
        """
        with torch.no_grad():
            next_actions, next_log_prob = self.actor.sample(batch.next_obs)
            next_obs = self.normalize(batch.next_obs)
            next_q = self.critic_target(next_obs, next_actions).amin(0)  # twin minimum
            return soft_q_target(
                batch.rewards, batch.terminated, next_q, next_log_prob, alpha, self.config.gamma
            )

    def critic_step(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """One Adam step of both critics towards the bootstrap target; returns the loss."""
        with self._forward_precision():
            target_q = self.bootstrap_target(batch, alpha)
            current_q = self.critic(self.normalize(batch.obs), batch.actions)
        critic_loss = 0.5 * (current_q - target_q).square().mean(1).sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        return critic_loss.detach()

    def policy_step(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """One fused Adam step of actor and log-alpha; returns the actor loss."""
        with self._forward_precision():
            actions_pi, log_prob = self.actor.sample(batch.obs)
            q_pi = self.critic(self.normalize(batch.obs), actions_pi).amin(0)
        loss = actor_objective(q_pi, log_prob, alpha)
        actor_loss = loss.detach()
        if self.tune_alpha:
            loss = loss + alpha_objective(self.log_alpha, log_prob.detach(), self.target_entropy)
        self.policy_optimizer.zero_grad()
        # Gradients for actor and log-alpha only: the critic's weight-gradient matmuls are
        # skipped entirely, and its parameters keep the gradients of the critic step.
        loss.backward(inputs=self._policy_params)
        self.policy_optimizer.step()
        return actor_loss

    def set_learning_rate(self, learning_rate: float) -> None:
        """The rate every optimizer uses from the next step on (a learning-rate schedule)."""
        for optimizer in (self.critic_optimizer, self.policy_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate

    def update_targets(self) -> None:
        """Polyak averaging: target <- (1 - tau) * target + tau * critic."""
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, self.config.tau)

    def state_dict(self) -> dict[str, Any]:
        """Every tensor and optimizer state needed to continue training exactly."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
