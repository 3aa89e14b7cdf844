"""What SAC's gradient step (rl_core/sac/sac_step.py) reads and writes, in one place.

`StepState` holds the tensors themselves, not copies: the agent builds it once over its
networks and optimizers (rl_core/sac/agent.py) and every step writes into them. The compiled
library (rl_core/sac/aot_step.py) takes the same inputs as one flat list of tensors; `flatten`
and `unflatten` are the only code that knows that list's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor

from rl_core.sac.buffer import Batch


class AdamGroup(NamedTuple):
    """One Adam step's tensors: parameters, their gradients' moments and step counts, aligned."""

    params: list[Tensor]
    exp_avgs: list[Tensor]
    exp_avg_sqs: list[Tensor]
    steps: list[Tensor]
    lr: Tensor
    """A 0-d tensor, not a float: a compiled step then takes a learning-rate schedule's new
    value as data (filled in place, rl_core/sac/adam_state.py), where a Python float would be
    baked into the graph."""
    beta1: float
    beta2: float
    eps: float


class StepState(NamedTuple):
    """The networks as the step sees them: each a list of its layers' (weight, bias) pairs from
    input to output; the actor's weights in nn.Linear's (out, in) layout, the twin critics'
    with a leading critic dimension, (n_critics, in, out)."""

    actor: list[Tensor]
    """The actor's layers, then under gSDE its log-std matrix (networks.Actor.sde_log_std)."""
    critic: list[Tensor]
    critic_target: list[Tensor]
    log_alpha: Tensor
    critic_adam: AdamGroup
    """Over `critic`."""
    policy_adam: AdamGroup
    """Over `actor`, then `log_alpha` when alpha is tuned: the two step together."""


class FlatLayout(NamedTuple):
    """What the flat list does not carry: how many tensors each part has, and Adam's numbers
    (compiled into the library rather than passed)."""

    actor_tensors: int
    critic_tensors: int
    alpha_in_policy: bool
    critic_adam: tuple[float, float, float]
    """(beta1, beta2, eps)."""
    policy_adam: tuple[float, float, float]


def flat_layout(state: StepState) -> FlatLayout:
    """The layout `flatten` gives this state."""
    return FlatLayout(
        len(state.actor),
        len(state.critic),
        len(state.policy_adam.params) > len(state.actor),
        _hyperparameters(state.critic_adam),
        _hyperparameters(state.policy_adam),
    )


def _hyperparameters(group: AdamGroup) -> tuple[float, float, float]:
    return group.beta1, group.beta2, group.eps


def flatten(batch: Batch, state: StepState) -> list[Tensor]:
    """Every tensor the step reads or writes, each once: the batch, the networks, log-alpha,
    then each Adam group's moments, step counts and learning rate (its parameters are the
    networks' own tensors). Detached views: the step writes into the originals."""
    tensors = [*batch, *state.actor, *state.critic, *state.critic_target, state.log_alpha]
    for adam in (state.critic_adam, state.policy_adam):
        tensors += [*adam.exp_avgs, *adam.exp_avg_sqs, *adam.steps, adam.lr]
    return [tensor.detach() for tensor in tensors]


def unflatten(tensors: Sequence[Tensor], layout: FlatLayout) -> tuple[Batch, StepState]:
    """The batch and state `flatten` made `tensors` from."""
    rest = list(tensors)

    def take(count: int) -> list[Tensor]:
        if count > len(rest):
            raise ValueError(f"{len(tensors)} tensors are too few for the layout {layout}")
        taken = rest[:count]
        del rest[:count]
        return taken

    batch = Batch(*take(len(Batch._fields)))
    actor = take(layout.actor_tensors)
    critic = take(layout.critic_tensors)
    critic_target = take(layout.critic_tensors)
    (log_alpha,) = take(1)
    policy = actor + ([log_alpha] if layout.alpha_in_policy else [])
    groups = []
    for params, hyperparameters in ((critic, layout.critic_adam), (policy, layout.policy_adam)):
        moments = take(len(params)), take(len(params)), take(len(params))
        (lr,) = take(1)
        groups.append(AdamGroup(params, *moments, lr, *hyperparameters))
    if rest:
        raise ValueError(f"{len(tensors)} tensors are too many for the layout {layout}")
    return batch, StepState(actor, critic, critic_target, log_alpha, *groups)
