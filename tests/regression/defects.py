"""Real bugs, each injectable by name, that a learning guard must catch.

Each defect patches one place of SAC (or sets a config value) for the duration of
`Defect.injected()`: the learning guard enters it inside every training process, and
tests/regression/defect_plugin.py for a whole pytest session, to see which defects the fast
unit tests catch. They sit in different places on purpose: the update's losses and its
squash (rl_core/sac/sac_step.py), the Polyak rate, replay sampling and storage, the training
loop's done flag, what the agent hands the step for the target, and evaluation.

Measured on AMD EPYC (family 25 model 17), median eval return over seeds 0 and 1 of the fast guard
(healthy: -171; bound -200), and seed 0 of the production guard (healthy -170; bound -200):

    defect                                fast     production
    alpha gradient sign flipped            -1,310     -1,310
    entropy term sign flipped              -1,429     -1,418
    tau = 1.0                              -1,348     -1,516
    replay samples only the newest row     -1,433     -1,533
    replay stores obs as next_obs          -1,516     -1,411
    time limit stored as terminal            -209       -439
    target taken at obs, not next_obs      -1,516     -1,411
    update squashes its action twice       -1,583     -1,418
    evaluation sends the squashed action     -396       -413

A collapsed policy saturates its action, so unrelated defects can score alike (-1,310,
-1,418). The old bound (-400) passed two of these: the time-limit and evaluation defects.

Tried and left out, because they cost Pendulum under 6% of its return, which no return guard
can tell from seed noise: the squash's log-prob correction dropped (-175) or sign-flipped
(-179), and an evaluation acting one step late (-181).

A defect in rl_core/sac/sac_step.py must reach the compiled step. TorchScript scripts the
patched module in this process. Inductor compiles in a child process, from the file on disk,
into a cache keyed by that file: so while such a defect is injected, inductor's step is
compiled here, from the patched module, into a private folder, never the shared cache.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor  # TorchScript resolves SquashedSample's fields by this name

from rl_core.envs.spec import EnvSpec
from rl_core.evaluation import episodes
from rl_core.run import training
from rl_core.sac import aot_step, sac_step, step_state
from rl_core.sac.agent import SAC, UpdateStats
from rl_core.sac.buffer import Batch, ReplayBuffer
from rl_core.sac.networks import Actor
from rl_core.sac.sac_step import SquashedSample, StepSettings
from rl_core.sac.step_state import StepState

# --- The update (rl_core/sac/sac_step.py): replacements TorchScript can script. ----------------


def _alpha_gradient_sign_flipped(log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Alpha shrinks while the policy's entropy is below the target, and grows above it."""
    return (log_prob + target_entropy).mean().reshape(1)


def _entropy_sign_flipped(
    q_pi: torch.Tensor, log_prob: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The actor is rewarded for a low-entropy policy instead of a high-entropy one."""
    batch = q_pi.shape[0]
    return (-alpha * log_prob - q_pi).mean(), -alpha / batch, -1.0 / batch


_real_squashed_sample = sac_step.squashed_sample


def _squashed_twice(head: Tensor, noise: Tensor, settings: StepSettings) -> SquashedSample:
    """The update's action is tanh(tanh(u)): the critics learn on actions in [-0.76, 0.76]
    while the actor acts, and is differentiated, as if they were tanh(u)."""
    sample = _real_squashed_sample(head, noise, settings)
    return SquashedSample(
        torch.tanh(sample.action), sample.log_prob, sample.noise, sample.std, sample.free
    )


# --- Replay storage and sampling (rl_core/sac/buffer.py). -------------------------------------

_real_sample = ReplayBuffer.sample
_real_add = ReplayBuffer.add


class _NewestRowIndex:
    """Stands in for the sampling RNG: every index it draws is the row written last."""

    def __init__(self, buffer: ReplayBuffer) -> None:
        self.newest = (buffer.position - 1) % buffer.capacity

    def integers(self, low: int, high: int, size: int) -> np.ndarray:
        return np.full(size, self.newest)


def _newest_row_only(self: ReplayBuffer, batch_size: int, rng: np.random.Generator) -> Batch:
    """Every sampled transition is the one written last."""
    return _real_sample(self, batch_size, _NewestRowIndex(self))


def _next_obs_stored_as_obs(
    self: ReplayBuffer,
    obs: np.ndarray,
    action: np.ndarray,
    reward: float,
    next_obs: np.ndarray,
    terminated: bool,
) -> None:
    """A row's next observation is its observation: the transition goes nowhere."""
    _real_add(self, obs, action, reward, obs, terminated)


# --- The training loop's done flag (rl_core/run/training.py). ----------------------------------


class _TruncationAsTermination(gym.Wrapper):
    """Reports the time limit as a terminal state: the loop stores done = terminated or
    truncated, so the last transition of every episode stops bootstrapping."""

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, bool(terminated or truncated), truncated, info


_real_make_env = training.make_env


def _training_env_ends_at_the_time_limit(spec: EnvSpec | str) -> gym.Env:
    return _TruncationAsTermination(_real_make_env(spec))


# --- The target's inputs (rl_core/sac/agent.py, what it hands the step). -----------------------

_real_update = SAC.update


def _target_on_obs(self: SAC, batch: Batch) -> UpdateStats:
    """The bootstrap target is taken at s, not s': the next action and target Q see obs."""
    return _real_update(self, batch._replace(next_obs=batch.obs))


# --- Evaluation (rl_core/evaluation/episodes.py). -----------------------------------------------

_real_actor_policy = episodes.actor_policy


def _squashed_action_to_the_env(actor: Actor) -> episodes.Policy:
    """The evaluation policy sends the env tanh(mean) in [-1, 1], not scaled to its bounds
    (Pendulum's torque then tops out at 1 of 2)."""
    policy = _real_actor_policy(actor)

    def squashed(obs: np.ndarray) -> np.ndarray:
        scale, bias = actor.action_scale.numpy(), actor.action_bias.numpy()
        return (policy(obs) - bias) / scale

    return squashed


# --- Injection. ----------------------------------------------------------------------------


def _compiled_here(batch: Batch, state: StepState, settings: StepSettings) -> Any:
    """Inductor's step compiled in this process, from the patched `sac_step`, into a private
    folder: the shared cache is keyed by the file on disk, which a defect does not change."""
    layout, inputs = aot_step.StepLayout.of(state, settings), step_state.flatten(batch, state)
    folder = Path(tempfile.mkdtemp(prefix="rlops-defect-step-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the library stays loaded till then
    spec = folder / "spec.pt"
    torch.save({"layout": layout, "inputs": inputs, "threads": torch.get_num_threads()}, spec)
    # Exporting and compiling here, not in a child as rl_core does, meets torch's own
    # deprecation warnings (TorchScript, pytree), which the suite's filterwarnings would turn
    # into the test's error: a defect must fail a test by its effect, not by this.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aot_step._compile(spec, folder / "step.pt2")
    return aot_step.CompiledStep(folder / "step.pt2")


@dataclass(frozen=True)
class Defect:
    """A bug to inject: attribute patches, and config overrides."""

    patches: tuple[tuple[object, str, Callable[..., object]], ...] = ()
    overrides: dict[str, object] | None = None

    @contextlib.contextmanager
    def injected(self) -> Iterator[dict[str, object]]:
        """The patches applied until the block ends; yields the config overrides."""
        with pytest.MonkeyPatch.context() as patcher:
            for owner, name, replacement in self.patches:
                patcher.setattr(owner, name, replacement)
            if any(owner is sac_step for owner, _, _ in self.patches):
                patcher.setattr(aot_step, "compiled_step", _compiled_here)
                # No background compile (of the file on disk): the first update compiles here.
                patcher.setattr(aot_step, "background_compile", lambda *inputs: None)
            yield dict(self.overrides or {})


HEALTHY = Defect()
DEFECTS = {
    "alpha gradient sign flipped": Defect(
        patches=((sac_step, "alpha_gradient", _alpha_gradient_sign_flipped),)
    ),
    "entropy term sign flipped": Defect(
        patches=((sac_step, "actor_objective", _entropy_sign_flipped),)
    ),
    "tau = 1.0": Defect(overrides={"tau": 1.0}),
    "replay samples only the newest row": Defect(
        patches=((ReplayBuffer, "sample", _newest_row_only),)
    ),
    "replay stores obs as next_obs": Defect(
        patches=((ReplayBuffer, "add", _next_obs_stored_as_obs),)
    ),
    "time limit stored as terminal": Defect(
        patches=((training, "make_env", _training_env_ends_at_the_time_limit),)
    ),
    "target taken at obs, not next_obs": Defect(patches=((SAC, "update", _target_on_obs),)),
    "update squashes its action twice": Defect(
        patches=((sac_step, "squashed_sample", _squashed_twice),)
    ),
    "evaluation sends the squashed action": Defect(
        patches=((episodes, "actor_policy", _squashed_action_to_the_env),)
    ),
}
