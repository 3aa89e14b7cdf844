"""SAC's update as its definition: losses on the modules, autograd, torch.optim.Adam.

This is the algorithm rlops implements, written the way CleanRL's `sac_continuous_action.py`
writes it, with Stable-Baselines3's loss terms (so results compare with RL-Zoo):

- twin critics regress on r + gamma (1 - terminated) (min Q_target(s', a') - alpha log pi(a'|s'))
  with a' drawn fresh from the current policy; loss 0.5 * sum over critics of their MSE;
- the actor minimises mean(alpha log pi(a|s) - min Q(s, a)), a reparameterised;
- log-alpha minimises -mean(log_alpha (log pi(a|s) + target_entropy)) on the actor's sample
  (automatic entropy tuning), in the actor's Adam step; alpha is its value before the update;
- the target critics follow by Polyak averaging: target <- (1 - tau) target + tau critic.

Log-probs are taken in the squashed [-1, 1] space; under gSDE (SB3's `use_sde`) the noise is
features @ E with one matrix E ~ N(0, exp(sde_log_std)) per update. The fast step
(rl_core/sac/sac_step.py) computes the same update with backward passes written out;
tests/unit/test_sac_step.py holds it to this one. Runs select this with
`step_compiler: reference`; it computes in fp32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Normal
from torch.distributions.transforms import TanhTransform

from rl_core.sac.buffer import Batch
from rl_core.sac.networks import SDE_VARIANCE_EPS, Actor, TwinQCritic

Sampler = Callable[[Tensor], tuple[Tensor, Tensor]]
"""Raw observations -> a reparameterised action in [-1, 1] and its log-prob."""


class Adam(torch.optim.Adam):
    """torch.optim.Adam (the fused kernel, as the fast step's) with the `lr` attribute that a
    learning-rate schedule sets on rlops' optimizers (rl_core/sac/adam_state.py)."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        super().__init__(params, lr=lr, fused=True)

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = value


class Learner(NamedTuple):
    """What an update reads and writes, and the run's fixed coefficients."""

    actor: Actor
    critic: TwinQCritic
    critic_target: TwinQCritic
    log_alpha: Tensor
    critic_optimizer: torch.optim.Optimizer
    policy_optimizer: torch.optim.Optimizer
    """Over the actor's parameters, and log-alpha when it is tuned."""
    gamma: float
    tau: float
    target_entropy: float | None
    """None: alpha stays fixed."""


class Losses(NamedTuple):
    """What one update reports: detached scalars."""

    critic_loss: Tensor
    actor_loss: Tensor
    alpha: Tensor


def squashed(pre_tanh: Tensor, gaussian: Normal) -> tuple[Tensor, Tensor]:
    """a = tanh(u) for a draw u of `gaussian`, and log pi(a) = log N(u) - log |da/du|."""
    action = torch.tanh(pre_tanh)
    log_prob = gaussian.log_prob(pre_tanh) - TanhTransform().log_abs_det_jacobian(pre_tanh, action)
    return action, log_prob.sum(-1)


def policy_sampler(actor: Actor) -> Sampler:
    """The policy's reparameterised sampler for one update. Gaussian: u = mean + std * N(0, 1),
    fresh noise on every call. gSDE: u = mean + features @ E, E drawn here once, the variance
    features^2 @ exp(sde_log_std)^2 (+ eps); gradients reach the features and the log-std."""
    if not actor.spec.sde:

        def gaussian(obs: Tensor) -> tuple[Tensor, Tensor]:
            mean, log_std = actor(obs)
            std = log_std.exp()
            return squashed(mean + std * torch.randn_like(mean), Normal(mean, std))

        return gaussian
    std = actor.sde_log_std.exp()
    exploration = std * torch.randn_like(std)

    def state_dependent(obs: Tensor) -> tuple[Tensor, Tensor]:
        features = actor.features(obs)
        mean = actor.mean(features)
        variance = features.square() @ std.square() + SDE_VARIANCE_EPS
        return squashed(mean + features @ exploration, Normal(mean, variance.sqrt()))

    return state_dependent


def critic_loss(learner: Learner, batch: Batch, sample: Sampler, alpha: Tensor) -> Tensor:
    """0.5 * sum over critics of mean((Q(s, a) - y)^2), y the soft Bellman target. A terminal
    transition does not bootstrap; a time-limit truncation (terminated = 0) does."""
    normalize = learner.actor.normalizer
    with torch.no_grad():
        next_actions, next_log_prob = sample(batch.next_obs)
        next_q = learner.critic_target(normalize(batch.next_obs), next_actions).amin(0)
        soft_value = next_q - alpha * next_log_prob
        target = batch.rewards + learner.gamma * (1.0 - batch.terminated) * soft_value
    q = learner.critic(normalize(batch.obs), batch.actions)
    return 0.5 * (q - target).square().mean(1).sum()


def policy_losses(
    learner: Learner, batch: Batch, sample: Sampler, alpha: Tensor
) -> tuple[Tensor, Tensor]:
    """The actor's loss and log-alpha's (zero when alpha is fixed), on one action sample."""
    actions, log_prob = sample(batch.obs)
    q = learner.critic(learner.actor.normalizer(batch.obs), actions).amin(0)
    actor_loss = (alpha * log_prob - q).mean()
    if learner.target_entropy is None:
        return actor_loss, torch.zeros(())
    alpha_loss = -(learner.log_alpha * (log_prob.detach() + learner.target_entropy)).mean()
    return actor_loss, alpha_loss


def minimise(loss: Tensor, optimizer: torch.optim.Optimizer) -> Tensor:
    """One optimizer step on `loss`, the loss's value returned: gradients of that optimizer's
    parameters only (the actor's loss reaches the critics too, which it must not move)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for param, grad in zip(params, torch.autograd.grad(loss, params), strict=True):
        param.grad = grad
    optimizer.step()
    return loss.detach()


def update(learner: Learner, batch: Batch) -> Losses:
    """One SAC update on a batch of raw observations: critics, then actor and log-alpha
    together (CleanRL's order; the actor sees the critics just updated), then the targets."""
    alpha = learner.log_alpha.detach().exp()
    sample = policy_sampler(learner.actor)
    q_loss = minimise(critic_loss(learner, batch, sample, alpha), learner.critic_optimizer)
    actor_loss, alpha_loss = policy_losses(learner, batch, sample, alpha)
    minimise(actor_loss + alpha_loss, learner.policy_optimizer)
    with torch.no_grad():
        for target, online in zip(
            learner.critic_target.parameters(), learner.critic.parameters(), strict=True
        ):
            target.lerp_(online, learner.tau)
    return Losses(q_loss, actor_loss.detach(), alpha[0])
