"""SAC's gradient step with its backward passes written out, compiled as one graph.

Why by hand: an autograd step of SAC dispatches about 190 small ops from Python, and on a
2-core CPU that per-op overhead, not the arithmetic, was most of a training step
(`python -m benchmarks.profile_update`). Both networks are small MLPs whose gradients fit on
a page, so the whole step (bootstrap target, both losses and their gradients, both Adam
steps, the Polyak update) is one pure function of tensors: no autograd graph, each weight
converted to bf16 once per step instead of on every use. TorchScript or inductor compiles it
(rl_core/sac/step_compiler.py): no Python between ops, and with inductor the elementwise ops fused.

The losses are Stable-Baselines3's, the algorithm's definition is rl_core/sac/sac_reference.py,
and tests/unit/test_sac_step.py holds this step to it on the same networks. The step runs
the networks as lists of their tensors (rl_core/sac/step_state.py), not through their modules'
forward passes: it keeps every layer's input for its backward pass, casts each weight to bf16
once per step, and must compile as one graph. So the actor's forward here (`mlp_forward` and
the samples) is its own; that test is where it is checked against networks.Actor's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.profiler import record_function

from rl_core.sac.buffer import Batch
from rl_core.sac.step_state import AdamGroup, StepState

CRITIC_PHASE, POLICY_PHASE, TARGET_PHASE = "sac.critic_step", "sac.policy_step", "sac.target_update"
"""The step's phases as torch.profiler names them (benchmarks/profile_update.py reads them).
`gradient_step` spells them out: TorchScript reads no module globals."""
ADAM_SCOPE = "sac.adam_step"
"""Each phase's Adam step, as torch.profiler names it (spelled out in `adam_step`)."""


class StepSettings(NamedTuple):
    """What stays fixed over a run. A layer's GEMMs run in bf16 where its `*_bf16` entry is
    true (rl_core/sac/agent.py decides), in fp32 elsewhere."""

    gamma: float
    tau: float
    target_entropy: float
    tune_alpha: bool
    act_dim: int
    log_std_min: float
    log_std_max: float
    actor_bf16: list[bool]
    critic_bf16: list[bool]
    sde: bool
    """gSDE: the actor's head gives the mean alone, and its last tensor is the log-std
    matrix of the noise (networks.Actor)."""
    sde_mean_clip: float
    sde_variance_eps: float


class SquashedSample(NamedTuple):
    """A reparameterised action and what its backward pass needs."""

    action: Tensor
    log_prob: Tensor
    noise: Tensor
    """The draw: N(0, 1), which the head's std scales; under gSDE, features @ E (the
    pre-squash action minus its mean)."""
    std: Tensor
    free: Tensor
    """1 where the head's output passes its gradient, 0 where clamped: the log-std (inside
    its clamp), under gSDE the mean (inside its clip)."""


def soft_q_target(
    rewards: Tensor,
    terminated: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor,
    gamma: float,
) -> Tensor:
    """r + gamma * (1 - terminated) * (Q'(s', a') - alpha * log pi(a'|s')).

    A terminal transition does not bootstrap; a truncated one (time limit) does, because its
    `terminated` flag is 0.
    """
    return rewards + gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)


def critic_objective(q: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """0.5 * sum over critics of mean((Q - target)^2), and its gradient w.r.t. Q (n, B)."""
    error = q - target
    return 0.5 * error.square().mean(1).sum(), error / q.shape[1]


def actor_objective(q_pi: Tensor, log_prob: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, float]:
    """mean(alpha * log pi(a|s) - Q(s, a)), minimised by the actor (maximise Q plus entropy);
    with its gradients w.r.t. each log pi and each Q."""
    batch = q_pi.shape[0]
    return (alpha * log_prob - q_pi).mean(), alpha / batch, -1.0 / batch


def alpha_gradient(log_prob: Tensor, target_entropy: float) -> Tensor:
    """Gradient of -mean(log_alpha * (log pi + target_entropy)) w.r.t. log-alpha: alpha grows
    while the policy's entropy is below the target."""
    return -(log_prob + target_entropy).mean().reshape(1)


def compute_params(params: list[Tensor], bf16: list[bool]) -> list[Tensor]:
    """The layers' parameters in the dtypes their GEMMs run in (a no-op for fp32 layers)."""
    converted: list[Tensor] = []
    for layer in range(len(bf16)):
        dtype = torch.bfloat16 if bf16[layer] else torch.float32
        converted.append(params[2 * layer].to(dtype))
        converted.append(params[2 * layer + 1].to(dtype))
    return converted


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b; over an inner dimension of 1 that is an outer product, done as a broadcast
    multiply (a batched GEMM of that shape takes ~200 us in MKL)."""
    if a.shape[-1] == 1:
        return a * b
    return torch.matmul(a, b)


def _output_to_input(weight: Tensor) -> Tensor:
    """The matrix that maps a layer's output gradient to its input gradient: W^T in the
    math's x W convention, which is nn.Linear's (out, in) weight as stored."""
    return weight if weight.dim() == 2 else weight.transpose(1, 2)


def mlp_forward(x: Tensor, params: list[Tensor], bf16: list[bool]) -> list[Tensor]:
    """Every layer's input (in its compute dtype), then the output: ReLU between layers.

    `params` come from `compute_params`; the output layer's entry in `bf16` is false, so
    outputs are fp32.
    """
    activations: list[Tensor] = []
    for layer in range(len(bf16)):
        weight, bias = params[2 * layer], params[2 * layer + 1]
        x = x.to(weight.dtype)
        if layer > 0:  # the previous layer's ReLU, in place, after the cast: fewer bytes
            x = torch.relu_(x)
        activations.append(x)
        if weight.dim() == 2:
            x = torch.addmm(bias, x, weight.t())
        else:
            x = torch.baddbmm(bias, x, weight)
    activations.append(x)
    return activations


def mlp_backward(
    activations: list[Tensor], params: list[Tensor], grad_output: Tensor, weight_grads: bool
) -> tuple[list[Tensor], Tensor]:
    """Backward pass of `mlp_forward` from d(loss)/d(output).

    With `weight_grads`: fp32 gradients of every parameter, in `params`' order, and the input
    gradient is not computed (an empty tensor). Without: no parameter gradients, and
    d(loss)/d(input) in the first layer's compute dtype (the policy step needs only that).
    """
    layers = len(params) // 2
    grads: list[Tensor] = []
    grad = grad_output
    for layer in range(layers - 1, -1, -1):
        weight, x = params[2 * layer], activations[layer]
        if layer < layers - 1:  # through the ReLU that produced the next layer's input
            grad = torch.ops.aten.threshold_backward(grad, activations[layer + 1], 0.0)
        grad = grad.to(weight.dtype)
        if weight_grads:
            if weight.dim() == 2:  # (out, in) = grad^T x
                grads.append(torch.mm(grad.t(), x).float())
            else:  # (n, in, out) = x^T grad
                grads.append(torch.bmm(x.transpose(1, 2), grad).float())
            grads.append(grad.sum(-2, keepdim=weight.dim() == 3, dtype=torch.float32))
        if layer > 0 or not weight_grads:
            grad = _matmul(grad, _output_to_input(weight))
    if not weight_grads:
        return grads, grad
    grads.reverse()  # (bias, weight) pairs from the top: flip to (weight, bias) from the input
    ordered: list[Tensor] = []
    for layer in range(layers):
        ordered.append(grads[2 * layer + 1])
        ordered.append(grads[2 * layer])
    return ordered, torch.empty(0)


def squash_correction(pre_tanh: Tensor) -> Tensor:
    """log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact, no epsilon. The log-prob is
    taken in the squashed [-1, 1] space, as SB3 does, so it subtracts this."""
    return 2.0 * (0.6931471805599453 - pre_tanh - torch.nn.functional.softplus(-2.0 * pre_tanh))


def squashed_sample(head: Tensor, noise: Tensor, settings: StepSettings) -> SquashedSample:
    """a = tanh(mean + noise * std) from the actor head's [mean, log-std], and log pi(a|s)."""
    mean, raw_log_std = head.split(settings.act_dim, -1)
    log_std = raw_log_std.clamp(settings.log_std_min, settings.log_std_max)
    std = log_std.exp()
    pre_tanh = mean + noise * std
    gaussian_log_prob = -0.5 * noise.square() - log_std - 0.9189385332046727  # log sqrt(2 pi)
    log_prob = (gaussian_log_prob - squash_correction(pre_tanh)).sum(-1)
    log_std_free = (raw_log_std == log_std).to(head.dtype)
    return SquashedSample(torch.tanh(pre_tanh), log_prob, noise, std, log_std_free)


def state_dependent_sample(
    head: Tensor, features: Tensor, exploration: Tensor, sde_log_std: Tensor, settings: StepSettings
) -> SquashedSample:
    """gSDE's a = tanh(clip(mean) + features @ E) and log pi(a|s), as SB3's SAC (full_std,
    learn_features, squashed): the pre-squash action is Gaussian with variance
    features^2 @ exp(sde_log_std)^2 (+ eps) around the mean; E ~ N(0, exp(sde_log_std)) is
    `exploration`, one draw for the whole batch."""
    clip = settings.sde_mean_clip
    mean = head.clamp(-clip, clip)
    noise = _matmul(features, exploration)
    variance = _matmul(features.square(), (2.0 * sde_log_std).exp()) + settings.sde_variance_eps
    std = variance.sqrt()
    pre_tanh = mean + noise
    gaussian_log_prob = -0.5 * noise.square() / variance - std.log() - 0.9189385332046727
    log_prob = (gaussian_log_prob - squash_correction(pre_tanh)).sum(-1)
    mean_free = ((head > -clip) & (head < clip)).to(head.dtype)
    return SquashedSample(torch.tanh(pre_tanh), log_prob, noise, std, mean_free)


def rows(sample: SquashedSample, start: int, end: int) -> SquashedSample:
    """The sample's rows start:end (views)."""
    return SquashedSample(
        sample.action[start:end],
        sample.log_prob[start:end],
        sample.noise[start:end],
        sample.std[start:end],
        sample.free[start:end],
    )


def twin_q(obs: Tensor, actions: Tensor, critic: list[Tensor], bf16: list[bool]) -> list[Tensor]:
    """Activations of every critic on (obs, action); the last is Q, shape (n, B, 1)."""
    x = torch.cat([obs, actions], -1)
    return mlp_forward(x.expand(critic[0].shape[0], -1, -1), critic, bf16)


def bootstrap_target(
    next_obs: Tensor,
    next_action: SquashedSample,
    rewards: Tensor,
    terminated: Tensor,
    critic_target: list[Tensor],
    alpha: Tensor,
    settings: StepSettings,
) -> Tensor:
    """The critics' regression target: the target critics' minimum at a fresh next action."""
    target_compute = compute_params(critic_target, settings.critic_bf16)
    next_q = twin_q(next_obs, next_action.action, target_compute, settings.critic_bf16)[-1]
    return soft_q_target(
        rewards,
        terminated,
        next_q.squeeze(-1).amin(0),
        next_action.log_prob,
        alpha,
        settings.gamma,
    )


def adam_step(group: AdamGroup, grads: list[Tensor]) -> None:
    """What torch.optim.Adam(fused=True).step() does, on the same state, written out with
    public ops (inductor fuses them into its own loops). The bias corrections are computed
    once: a group's parameters all step together."""
    with record_function("sac.adam_step"):
        for step in group.steps:
            step.add_(1.0)
        step = group.steps[0]
        step_size = group.lr / (1.0 - torch.pow(group.beta1, step))
        bias_correction2_sqrt = (1.0 - torch.pow(group.beta2, step)).sqrt()
        for i in range(len(group.params)):
            exp_avg, exp_avg_sq = group.exp_avgs[i], group.exp_avg_sqs[i]
            exp_avg.lerp_(grads[i], 1.0 - group.beta1)
            exp_avg_sq.mul_(group.beta2).addcmul_(grads[i], grads[i], value=1.0 - group.beta2)
            denominator = exp_avg_sq.sqrt() / bias_correction2_sqrt + group.eps
            group.params[i].sub_(step_size * exp_avg / denominator)


def critic_step(
    obs: Tensor,
    actions: Tensor,
    target: Tensor,
    critic: list[Tensor],
    adam: AdamGroup,
    settings: StepSettings,
) -> Tensor:
    """One Adam step of both critics towards the bootstrap target; returns the loss."""
    critic_compute = compute_params(critic, settings.critic_bf16)
    activations = twin_q(obs, actions, critic_compute, settings.critic_bf16)
    loss, grad_q = critic_objective(activations[-1].squeeze(-1), target)
    grads, _ = mlp_backward(activations, critic_compute, grad_q.unsqueeze(-1), True)
    adam_step(adam, grads)
    return loss


def gaussian_actor_gradients(
    activations: list[Tensor],
    actor: list[Tensor],
    sample: SquashedSample,
    grad_pre_tanh: Tensor,
    grad_log_prob: Tensor,
) -> list[Tensor]:
    """The actor's gradients when its head gives mean and log-std:
    u = mean + std * N(0, 1), d log N/d log-std = -1 (summed over actions)."""
    grad_log_std = (grad_pre_tanh * sample.noise * sample.std - grad_log_prob) * sample.free
    grads, _ = mlp_backward(activations, actor, torch.cat([grad_pre_tanh, grad_log_std], -1), True)
    return grads


def state_dependent_actor_gradients(
    activations: list[Tensor],
    actor: list[Tensor],
    sample: SquashedSample,
    grad_pre_tanh: Tensor,
    grad_log_prob: Tensor,
    exploration: Tensor,
    sde_log_std: Tensor,
) -> list[Tensor]:
    """The actor's gradients under gSDE (`state_dependent_sample`): the layers', then the
    log-std matrix's. The features h feed the noise h @ E and the variance h^2 @ std^2 as
    well as the head (SB3's learn_features), so their gradient has three terms.

    With u = mean + noise and log N = -noise^2 / (2 var) - log(var) / 2 - c: the mean's
    gradient is d/du alone (the Gaussian term's dependence on u and on the mean cancels),
    the noise's is d/du - g noise / var, the variance's g (noise^2 / var - 1) / (2 var), where
    g = d(loss)/d(log pi)."""
    features = activations[-2]  # the head's input; fp32 (an output layer is never bf16)
    variance = sample.std.square()
    grad_noise = grad_pre_tanh - grad_log_prob * sample.noise / variance
    grad_variance = grad_log_prob * 0.5 * (sample.noise.square() / variance - 1.0) / variance
    std_squared = (2.0 * sde_log_std).exp()
    grad_mean = grad_pre_tanh * sample.free
    grad_sde_log_std = (
        torch.mm(features.t(), grad_noise) * exploration
        + 2.0 * torch.mm(features.square().t(), grad_variance) * std_squared
    )
    grad_features = (
        _matmul(grad_mean, actor[-2])
        + _matmul(grad_noise, exploration.t())
        + 2.0 * features * _matmul(grad_variance, std_squared.t())
    )
    # The trunk's backward starts below the ReLU that made the features.
    grad_trunk_output = torch.ops.aten.threshold_backward(grad_features, features, 0.0)
    grads, _ = mlp_backward(activations[:-1], actor[:-2], grad_trunk_output, True)
    grads += [torch.mm(grad_mean.t(), features), grad_mean.sum(0), grad_sde_log_std]
    return grads


def policy_step(
    obs: Tensor,
    actor_activations: list[Tensor],
    sample: SquashedSample,
    actor: list[Tensor],
    critic: list[Tensor],
    alpha: Tensor,
    exploration: Tensor,
    sde_log_std: Tensor,
    adam: AdamGroup,
    settings: StepSettings,
) -> Tensor:
    """One Adam step of actor and log-alpha together, from the actor's pass over `obs` and its
    action sample, through the critics as the critic step left them; returns the actor loss.
    The critics get no gradient: only d(loss)/d(action). `exploration` and `sde_log_std`
    are gSDE's (empty without it)."""
    critic_compute = compute_params(critic, settings.critic_bf16)
    q = twin_q(obs, sample.action, critic_compute, settings.critic_bf16)
    q_pi, smaller = q[-1].squeeze(-1).min(0)
    loss, grad_log_prob, grad_q_pi = actor_objective(q_pi, sample.log_prob, alpha)
    # The twin minimum passes the gradient to the critic that gave it.
    grad_q = torch.zeros_like(q[-1]).scatter_(0, smaller.view(1, -1, 1), grad_q_pi)
    _, grad_input = mlp_backward(q, critic_compute, grad_q, False)
    grad_action = grad_input.float().sum(0)[:, obs.shape[1] :]
    # u = mean + noise * std, a = tanh(u): d a/d u = 1 - a^2, d log pi/d u = 2 tanh(u).
    grad_pre_tanh = grad_action * (1.0 - sample.action.square()) + grad_log_prob * 2.0 * (
        sample.action
    )
    if settings.sde:
        grads = state_dependent_actor_gradients(
            actor_activations,
            actor,
            sample,
            grad_pre_tanh,
            grad_log_prob,
            exploration,
            sde_log_std,
        )
    else:
        grads = gaussian_actor_gradients(
            actor_activations, actor, sample, grad_pre_tanh, grad_log_prob
        )
    if settings.tune_alpha:
        grads.append(alpha_gradient(sample.log_prob, settings.target_entropy))
    adam_step(adam, grads)
    return loss


def gradient_step(
    batch: Batch, state: StepState, settings: StepSettings
) -> tuple[Tensor, Tensor, Tensor]:
    """One SAC update on a batch of (normalized) observations, in place on `state`: critic
    loss, actor loss, and the alpha the step used (its value before the step, as in SB3).

    Critics first, then actor and log-alpha together (CleanRL's order), then the targets.
    """
    with torch.no_grad():
        alpha = state.log_alpha.exp()
        size = batch.obs.shape[0]
        with record_function("sac.critic_step"):
            # One actor pass serves both steps, since only the policy step changes the actor:
            # next actions for the bootstrap target, then the batch's actions (noise is drawn
            # in that order, as two passes would draw it).
            actor_compute = compute_params(state.actor, settings.actor_bf16)
            activations = mlp_forward(
                torch.cat([batch.next_obs, batch.obs]), actor_compute, settings.actor_bf16
            )
            head = activations[-1]
            if settings.sde:  # one noise matrix for the step (SB3 resets it per update)
                sde_log_std = state.actor[-1]
                exploration = sde_log_std.exp() * torch.randn_like(sde_log_std)
                samples = state_dependent_sample(
                    head, activations[-2], exploration, sde_log_std, settings
                )
            else:
                sde_log_std = exploration = torch.empty(0)
                samples = squashed_sample(
                    head, torch.randn_like(head[:, : settings.act_dim]), settings
                )
            target = bootstrap_target(
                batch.next_obs,
                rows(samples, 0, size),
                batch.rewards,
                batch.terminated,
                state.critic_target,
                alpha,
                settings,
            )
            critic_loss = critic_step(
                batch.obs, batch.actions, target, state.critic, state.critic_adam, settings
            )
        with record_function("sac.policy_step"):
            actor_loss = policy_step(
                batch.obs,
                [layer_input[size:] for layer_input in activations],
                rows(samples, size, 2 * size),
                actor_compute,
                state.critic,
                alpha,
                exploration,
                sde_log_std,
                state.policy_adam,
                settings,
            )
        with record_function("sac.target_update"):
            for i in range(len(state.critic)):
                state.critic_target[i].lerp_(state.critic[i], settings.tau)
    return critic_loss, actor_loss, alpha[0]
