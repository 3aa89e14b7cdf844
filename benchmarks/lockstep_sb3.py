"""rlops' gradient step against Stable-Baselines3's own `SAC.train()`, in lockstep.

    .venv/bin/python -m benchmarks.lockstep_sb3
    .venv/bin/python -m benchmarks.lockstep_sb3 --updates 500 --batch 64
    .venv/bin/python -m benchmarks.lockstep_sb3 --sde      (both explore with gSDE)

tests/unit/test_sac_step.py checks `rl_core/sac/sac_step.py` against an autograd transcription of
SB3's update; this checks it against SB3 2.9.2's code itself. Both start from SB3's initial
weights (copied into rlops' networks), take the same Pendulum-shaped batches and the same
Gaussian noise (SB3's draws are recorded and handed to rlops), with fp32 matmuls, and after
chosen updates the script prints, per tensor, the largest difference relative to the
tensor's largest value. Float rounding differs between the two (the twin critics run as one
batched matmul in rlops), so the figures start near 1e-7 and grow as training compounds the
rounding; a different formula would show at the first update. It also prints the actor's
first gradients (`actor_gradient_differences`). With Gaussian noise they differ by about
1e-4 of their largest values: SB3's squash correction is log(1 - tanh(u)^2 + 1e-6), rlops'
exact, a relative difference of 1e-6 / (1 - tanh(u)^2), 1e-4 at |u| = 3 (with SB3's epsilon
set to 0 they agree to 1e-6). Adam's first step, lr * g / (|g| + eps), turns such a change
of a near-zero gradient into a visible move, so at the first update the actor's hidden
weights differ by more than the rest (about 1e-4 in absolute terms).

With `--sde` the noise handed over is SB3's gSDE matrix, drawn once per update (its
`reset_noise` draws a second one, per env, that the update does not use).

SB3 is imported from the peer venv `benchmarks/vs_sb3.py` creates (appended to sys.path, so
torch, numpy and gymnasium are rlops' own; the venv pins the same versions).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributions.normal as torch_normal

from benchmarks.vs_sb3 import sb3_python
from rl_core.common.config import build_config
from rl_core.sac import sac_step
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import Batch

TINY = torch.finfo(torch.float32).tiny
REPORT_AT = (1, 2, 5, 10, 50, 100, 200, 500, 1000)
"""Updates after which the differences are printed (and after the last one)."""


class LockstepMismatch(Exception):
    """rlops asked for a random draw SB3 did not make: the two algorithms differ there."""


def import_sb3() -> None:
    """Make the peer venv's stable_baselines3 importable here, after rlops' own packages."""
    done = subprocess.run(
        [str(sb3_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    sys.path.append(done.stdout.strip())


def sb3_mean_layer(actor: object) -> torch.nn.Linear:
    """SB3's mean layer: under gSDE it is followed by a Hardtanh (its clip_mean)."""
    return actor.mu[0] if isinstance(actor.mu, torch.nn.Sequential) else actor.mu


def sb3_log_alpha(model: object) -> torch.Tensor:
    """SB3's log entropy coefficient: the tuned parameter, or the log of a fixed `ent_coef`."""
    fixed = model.log_ent_coef is None
    return model.ent_coef_tensor.log().reshape(1) if fixed else model.log_ent_coef


def copy_sb3_weights(model: object, agent: SAC) -> None:
    """SB3's actor, critics, targets and log-alpha into rlops' (fused) networks."""
    actor, mine = model.actor, agent.actor
    mean = sb3_mean_layer(actor)
    with torch.no_grad():
        for index in range(0, len(mine.trunk), 2):  # Linear, ReLU, Linear, ReLU, ...
            mine.trunk[index].weight.copy_(actor.latent_pi[index].weight)
            mine.trunk[index].bias.copy_(actor.latent_pi[index].bias)
        if mine.spec.sde:  # the head is the mean alone; the log-std is a matrix parameter
            mine.head.weight.copy_(mean.weight)
            mine.head.bias.copy_(mean.bias)
            mine.sde_log_std.copy_(actor.log_std)
        else:
            mine.head.weight.copy_(torch.cat([mean.weight, actor.log_std.weight]))
            mine.head.bias.copy_(torch.cat([mean.bias, actor.log_std.bias]))
        for ours, theirs in (
            (agent.critic, model.critic),
            (agent.critic_target, model.critic_target),
        ):
            for layer, index in enumerate(range(0, len(theirs.qf0), 2)):
                q0, q1 = theirs.qf0[index], theirs.qf1[index]
                ours.weights[layer].copy_(torch.stack([q0.weight.T, q1.weight.T]))
                ours.biases[layer].copy_(torch.stack([q0.bias, q1.bias])[:, None, :])
        agent.log_alpha.copy_(sb3_log_alpha(model))


@contextmanager
def recorded_noise(
    reorder: Callable[[torch.Tensor], torch.Tensor] = lambda draw: draw,
) -> Iterator[list[torch.Tensor]]:
    """Every standard-normal tensor torch.distributions.Normal.rsample draws in the block,
    passed through `reorder` first (lockstep_loop.py reverses the rows of its control's)."""
    draws: list[torch.Tensor] = []
    original = torch_normal._standard_normal

    def recording(*args: object, **kwargs: object) -> torch.Tensor:
        draws.append(reorder(original(*args, **kwargs)))
        return draws[-1]

    torch_normal._standard_normal = recording
    try:
        yield draws
    finally:
        torch_normal._standard_normal = original


def rlops_order(noise: list[torch.Tensor], state_dependent: bool = False) -> Iterator[torch.Tensor]:
    """SB3's Gaussian draws in the order rlops asks for them: an exploration draw is one
    action's; an update draws the batch's actions, then its next actions, where rlops' step
    takes both at once, next actions first. Under gSDE every draw is a
    noise matrix E, asked for in the same order; SB3 draws a batch of matrices beside each E
    (`exploration_matrices`), which it uses only with several envs, so they are skipped."""
    pending = iter(noise)
    for draw in pending:
        if state_dependent:
            if draw.dim() == 2:
                yield draw
        elif len(draw) == 1:
            yield draw
        else:
            yield torch.cat([next(pending), draw])


@contextmanager
def given_noise(draws: Iterable[torch.Tensor]) -> Iterator[None]:
    """`torch.randn_like` returns the next of `draws` in the block (rlops draws its noise with
    it); a draw of another shape than the one asked for is a different algorithm."""
    original: Callable[..., torch.Tensor] = torch.randn_like
    pending = iter(draws)

    def replayed(like: torch.Tensor) -> torch.Tensor:
        noise = next(pending, None)
        if noise is None or noise.shape != like.shape:
            got = "nothing" if noise is None else f"shape {tuple(noise.shape)}"
            raise LockstepMismatch(
                f"rlops draws noise of shape {tuple(like.shape)}; SB3 drew {got}"
            )
        return noise

    torch.randn_like = replayed
    try:
        yield
    finally:
        torch.randn_like = original


def pendulum_batch(rng: np.random.Generator, size: int) -> Batch:
    """Random transitions shaped like Pendulum's: (cos, sin, velocity), torque in [-1, 1]."""
    angle = rng.uniform(-np.pi, np.pi, size)
    obs = np.c_[np.cos(angle), np.sin(angle), rng.uniform(-8.0, 8.0, size)]
    next_obs = obs + rng.normal(0.0, 0.1, obs.shape)
    return Batch(
        torch.tensor(obs, dtype=torch.float32),
        torch.tensor(rng.uniform(-1.0, 1.0, (size, 1)), dtype=torch.float32),
        torch.tensor(-rng.uniform(0.0, 16.0, size), dtype=torch.float32),
        torch.tensor(next_obs, dtype=torch.float32),
        torch.zeros(size),
    )


def differences(model: object, agent: SAC) -> dict[str, float]:
    """Largest |rlops - SB3| over the largest |SB3| for a few tensors of each network (log-alpha
    starts at 0: there the smallest normal float stands in for its size)."""
    act_dim, actor = agent.actor.act_dim, agent.actor
    log_std = actor.sde_log_std if actor.spec.sde else actor.head.weight[act_dim:]
    sb3_log_std = model.actor.log_std if actor.spec.sde else model.actor.log_std.weight
    pairs = {
        "actor hidden": (actor.trunk[2].weight, model.actor.latent_pi[2].weight),
        "actor mean": (actor.head.weight[:act_dim], sb3_mean_layer(model.actor).weight),
        "actor log-std": (log_std, sb3_log_std),
        "critic hidden": (agent.critic.weights[1][0], model.critic.qf0[2].weight.T),
        "critic output": (agent.critic.weights[-1][1], model.critic.qf1[-1].weight.T),
        "target hidden": (agent.critic_target.weights[1][0], model.critic_target.qf0[2].weight.T),
        "log-alpha": (agent.log_alpha, sb3_log_alpha(model)),
    }
    return {
        name: ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(TINY)).item()
        for name, (ours, theirs) in pairs.items()
    }


def actor_gradient_differences(model: object, agent: SAC) -> dict[str, float]:
    """Largest |rlops - SB3| over the largest |SB3| of each actor tensor's gradient, read from
    Adam's first moments after the first update ((1 - beta1) * gradient in both). Adam's first
    step, lr * g / (|g| + eps), turns a rounding-sized difference in a near-zero gradient
    into a visible move of that weight; the gradients show whether the formulas agree."""
    ours = dict(
        zip(
            map(id, agent.step_state.policy_adam.params),
            agent.policy_optimizer.exp_avgs,
            strict=True,
        )
    )
    theirs = model.actor.optimizer.state
    actor, sb3_actor = agent.actor, model.actor
    mean = sb3_mean_layer(sb3_actor)
    pairs = {
        f"hidden {index // 2}": (actor.trunk[index].weight, [sb3_actor.latent_pi[index].weight])
        for index in range(0, len(actor.trunk), 2)
    }
    if actor.spec.sde:
        pairs |= {"mean": (actor.head.weight, [mean.weight])}
        pairs |= {"log-std": (actor.sde_log_std, [sb3_actor.log_std])}
    else:
        pairs |= {"head": (actor.head.weight, [mean.weight, sb3_actor.log_std.weight])}
    differences = {}
    for name, (mine, sb3_params) in pairs.items():
        reference = torch.cat([theirs[param]["exp_avg"] for param in sb3_params])
        difference = (ours[id(mine)] - reference).abs().max() / reference.abs().max()
        differences[name] = difference.item()
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sde", action="store_true", help="both explore with gSDE")
    args = parser.parse_args()
    import_sb3()
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    torch.set_num_threads(1)
    env = gym.make("Pendulum-v1")
    hidden, log_std_init = [256, 256], -3.0
    model = SB3SAC(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        batch_size=args.batch,
        use_sde=args.sde,
        policy_kwargs={"net_arch": hidden, "log_std_init": log_std_init},
        seed=0,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as log_dir:  # SB3's logger always makes a folder
        model.set_logger(configure(log_dir, [""]))
    config = build_config(
        {
            "env_id": "Pendulum-v1",
            "hidden_sizes": hidden,
            "learning_rate": 1e-3,
            "matmul_precision": "ieee",
            "step_compiler": "torchscript",  # its settings: the eager step with fused Adam
            "use_sde": args.sde,
            "log_std_init": log_std_init,
        }
    )
    agent = SAC(config, 3, 1, env.action_space.low, env.action_space.high)
    copy_sb3_weights(model, agent)
    rng = np.random.default_rng(0)
    exploration = "gSDE" if args.sde else "Gaussian noise"
    print(f"SB3 SAC.train() vs rlops sac_step.gradient_step, {exploration}, batch {args.batch}")
    start = differences(model, agent)  # all 0: the copy is exact
    print("update  " + "  ".join(f"{name:>13}" for name in start))
    print(f"{0:>6}  " + "  ".join(f"{value:>13.1e}" for value in start.values()))
    for update in range(1, args.updates + 1):
        batch = pendulum_batch(rng, args.batch)
        obs, actions, rewards, next_obs, terminated = batch
        samples = ReplayBufferSamples(obs, actions, next_obs, terminated[:, None], rewards[:, None])
        model.replay_buffer.sample = lambda *_args, samples=samples, **_kwargs: samples
        with recorded_noise() as draws:
            model.train(gradient_steps=1, batch_size=args.batch)
        with given_noise(rlops_order(draws, state_dependent=args.sde)):
            sac_step.gradient_step(batch, agent.step_state, agent._settings)
        if update == 1:
            gradients = actor_gradient_differences(model, agent)
            print(
                "        actor gradients of update 1: "
                + ", ".join(f"{name} {value:.1e}" for name, value in gradients.items())
            )
        if update in REPORT_AT or update == args.updates:
            row = differences(model, agent)
            print(f"{update:>6}  " + "  ".join(f"{value:>13.1e}" for value in row.values()))


if __name__ == "__main__":
    main()
