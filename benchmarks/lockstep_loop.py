"""rlops' training loop against Stable-Baselines3's own `SAC.learn()`, in lockstep.

    .venv/bin/python -m benchmarks.lockstep_loop
    .venv/bin/python -m benchmarks.lockstep_loop --env LunarLanderContinuous-v3 --steps 12000
    .venv/bin/python -m benchmarks.lockstep_loop --env MountainCarContinuous-v0 --steps 2048

benchmarks/lockstep_sb3.py checks one gradient step; this checks everything around it: env
seeding and resets, the warm-up, the step updates start at, what goes into the replay buffer
(truncation is not termination), how many rows each batch is drawn from, and the exploration
action. SB3 2.9.2 trains first, with the env's preset hyperparameters (as vs_sb3.py gives
them), and its random draws are recorded: warm-up actions, every batch's row indices, every
Gaussian draw. Then rlops' loop (`rl_core.run.training`) trains from SB3's initial weights, fed
those same draws, with fp32 matmuls on 1 thread. A draw rlops asks for that SB3 did not make
(an update at another step, a batch from another number of rows, noise of another shape)
stops the run with the step where the two algorithms part.

Otherwise the script prints, at chosen steps, the largest difference between the transitions
each stored so far, for rlops against SB3 and for a control: SB3 trained again with every
batch's rows (and their noise) in reverse order, the same update summed in another order.
Both are zero through the warm-up. Past it rlops parts from SB3 faster than the control
does, because rlops takes the squash correction exactly where SB3 adds 1e-6 inside the log
(docs/changelog.md: with SB3's form patched in, rlops tracks SB3 as closely as the control).
Under gSDE (MountainCarContinuous-v0's preset) the draws are the noise matrices instead: one
at the start of each `train_freq` chunk (and every `sde_sample_freq` steps) and one per
gradient step, so the replay checks the matrices' cadence too. There is no warm-up (the
preset starts learning at once), so the stored actions are the policy's from the first step
on, equal to rounding. `--steps` must be a multiple of `train_freq`.
Last, each network's difference at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmarks.lockstep_sb3 import (
    LockstepMismatch,
    copy_sb3_weights,
    differences,
    given_noise,
    import_sb3,
    recorded_noise,
    rlops_order,
)
from benchmarks.vs_sb3 import job_config, rlops_job
from rl_core.common.tracking import NullTracker
from rl_core.run.training import _Run
from rl_core.sac import sac_step

REPORT_AFTER_WARMUP = (0, 1, 2, 10, 50, 100, 400, 1000, 2000, 5000, 10000, 20000)
"""Env steps past the warm-up after which the largest difference of the stored transitions
is printed (and after the first and the last step)."""


@dataclass
class Sb3Draws:
    """What SB3's `learn()` drew at random, in order, and the table it stored."""

    batches: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    """(env step, rows sampled from, row indices) of every batch."""
    noise: list[torch.Tensor] = field(default_factory=list)
    transitions: np.ndarray | None = None
    """One row per env step, in rlops' buffer layout: obs, action, reward, next obs, terminated."""


def learn_recorded(model: object, steps: int, reverse_rows: bool = False) -> Sb3Draws:
    """Run SB3's `learn()`, recording its batches and Gaussian draws. With `reverse_rows`,
    every batch comes in the reverse order of its rows, its noise too (under gSDE a batch's
    noise is one matrix for all rows: it stays), so the update is the same sum over the same
    (transition, noise) pairs in another order: only rounding differs.
    """
    draws = Sb3Draws()
    buffer = model.replay_buffer
    sample_rows = buffer._get_samples
    order = slice(None, None, -1 if reverse_rows else 1)

    def recording_rows(indices: np.ndarray, env: object = None) -> object:
        rows = buffer.buffer_size if buffer.full else buffer.pos
        draws.batches.append((model.num_timesteps, rows, indices.copy()))
        return sample_rows(indices[order], env)

    buffer._get_samples = recording_rows
    per_row = reverse_rows and not model.use_sde
    reorder = (lambda draw: draw.flip(0)) if per_row else (lambda draw: draw)
    with tempfile.TemporaryDirectory() as log_dir, recorded_noise(reorder) as noise:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(log_dir, [""]))  # SB3's logger always makes a folder
        model.learn(total_timesteps=steps)
    draws.noise = noise
    terminated = buffer.dones[:steps, 0] * (1.0 - buffer.timeouts[:steps, 0])
    draws.transitions = np.concatenate(
        [
            buffer.observations[:steps, 0],
            buffer.actions[:steps, 0],
            buffer.rewards[:steps],
            buffer.next_observations[:steps, 0],
            terminated[:, None],
        ],
        axis=1,
        dtype=np.float32,
    )
    return draws


@dataclass
class ReplayedRngs:
    """Stands in for the two numpy generators of rlops' loop, handing out SB3's draws."""

    warmup_actions: Iterator[np.ndarray]
    batches: Iterator[tuple[int, int, np.ndarray]]
    step: Callable[[], int]

    def uniform(self, low: float, high: float, size: int) -> np.ndarray:
        """A warm-up action: SB3's, as it stored it in [-1, 1]."""
        return next(self.warmup_actions)

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        """A batch's rows: SB3's, if rlops samples at the same step from as many rows."""
        sb3_step, rows, indices = next(self.batches, (None, None, None))
        if (sb3_step, rows) != (self.step(), high):
            raise LockstepMismatch(
                f"rlops samples a batch after env step {self.step()} from {high} rows; "
                f"SB3's next batch came after step {sb3_step} from {rows} rows"
            )
        return indices


def worst_so_far(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """At each env step, the largest difference of any transition stored up to it."""
    return np.maximum.accumulate(np.abs(ours - theirs).max(axis=1))


@contextmanager
def first_mismatch_reported() -> Iterator[None]:
    try:
        yield
    except LockstepMismatch as mismatch:
        raise SystemExit(f"the loops part: {mismatch}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import_sb3()
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    from benchmarks.sb3_worker import build_model

    torch.set_num_threads(1)
    job = rlops_job(
        argparse.Namespace(
            env=args.env,
            steps=args.steps,
            threads=1,
            eval_episodes=10,
            set=["matmul_precision=ieee", "step_compiler=torchscript"],
        ),
        args.seed,
    )
    train_freq = job["hyperparameters"]["train_freq"]
    if args.steps % train_freq:
        parser.error(
            f"--steps must be a multiple of train_freq ({train_freq}): SB3 collects whole "
            "chunks, past total_timesteps, where rlops stops at it"
        )

    def sb3_model() -> object:
        return build_model(job, Monitor(gym.make(job["env_id"], **job["env_kwargs"])))

    run = _Run(job_config(job), NullTracker())  # first: it seeds and draws from torch's RNG
    model = sb3_model()
    copy_sb3_weights(model, run.agent)
    run.agent._step = sac_step.gradient_step  # eager, so its noise can be handed to it
    draws = learn_recorded(model, args.steps)
    control = sb3_model()  # SB3 seeds every generator it uses again: the same draws
    control_draws = learn_recorded(control, args.steps, reverse_rows=True)

    obs_dim, act_dim = run.buffer.obs_dim, run.act_dim
    warmup = job["hyperparameters"]["learning_starts"]
    replayed = ReplayedRngs(
        iter(draws.transitions[:warmup, obs_dim : obs_dim + act_dim]),
        iter(draws.batches),
        lambda: run.progress.step,
    )
    run.progress.action_rng = run.progress.sample_rng = replayed
    noise = rlops_order(draws.noise, state_dependent=job["hyperparameters"]["use_sde"])
    with first_mismatch_reported(), given_noise(noise):
        run.run(None, show_progress=False)  # not through train(): no denormal flushing, as SB3
    if next(replayed.batches, None) is not None or next(noise, None) is not None:
        raise SystemExit("the loops part: SB3 drew more than rlops asked for")

    print(f"rlops' loop vs SB3 2.9.2 learn(), {job['env_id']}, seed {args.seed}, fp32, 1 thread")
    print(
        f"same structure: {len(draws.batches)} updates each, the first after env step "
        f"{draws.batches[0][0]}, every batch from the same rows, the same noise draws"
    )
    ours = worst_so_far(run.buffer.table[: args.steps], draws.transitions)
    theirs = worst_so_far(control_draws.transitions, draws.transitions)
    identical = int(np.argmax(ours > 0)) if ours.any() else args.steps
    print(f"stored transitions identical through env step {identical}")
    print("largest difference in any transition stored so far (control: SB3 against itself")
    print("with every batch's rows, and their noise, in reverse order)")
    print(f"{'env step':>8}  {'rlops vs SB3':>12}  {'control':>8}")
    report_at = {1, args.steps, *(warmup + k for k in REPORT_AFTER_WARMUP)}
    for step in sorted(s for s in report_at if 1 <= s <= args.steps):
        print(f"{step:>8}  {ours[step - 1]:>12.1e}  {theirs[step - 1]:>8.1e}")
    control_networks = _Run(job_config(job), NullTracker()).agent
    copy_sb3_weights(control, control_networks)
    print("networks at the end, largest difference / largest |SB3|:")
    print(f"  {'':<14} {'rlops vs SB3':>12}  {'control':>8}")
    rlops_gap, control_gap = differences(model, run.agent), differences(model, control_networks)
    for name, value in rlops_gap.items():
        print(f"  {name:<14} {value:>12.1e}  {control_gap[name]:>8.1e}")


if __name__ == "__main__":
    main()
