"""Export the deterministic policy as TorchScript, and prove the export is the same policy.

`InferenceActor` is the serving path only: observation -> tanh(mean) scaled to the action
bounds. No `torch.distributions`, no log-std head, nothing TorchScript cannot compile. Every
export is followed by an equivalence check against the eager actor on random and real
observations; a mismatch raises instead of shipping a different policy.

TorchScript is deprecated in torch 2.13 (its successor is `torch.export` + AOTInductor); the
deprecation warning is silenced only around the calls that emit it. The same `InferenceActor`
is also exported as ONNX (`rl_core.policy.onnx_export`), checked by `check_export` the same way: the
path that replaces TorchScript when torch drops it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rl_core.envs.spec import EnvSpec, make_env
from rl_core.evaluation.episodes import Policy
from rl_core.policy.actor_audit import check_archive, check_graphs
from rl_core.sac.networks import Actor
from rl_core.sac.torchscript import quiet_torchscript

EQUIVALENCE_TOLERANCE = 1e-5

ExportedActor = Callable[[torch.Tensor], torch.Tensor]
"""An exported actor as its runtime calls it: observations (batch, obs_dim) -> actions."""


class ExportMismatchError(RuntimeError):
    """The exported actor does not reproduce the eager actor's actions."""


class InferenceActor(nn.Module):
    """A trained `Actor`'s `deterministic_action` as a module's forward, the one thing an
    export runs: the actor's own code on a copy of it, so a change to `Actor` reaches every
    export. Freezing (`script_actor`) folds the module's parameters and branches into
    constants."""

    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor = copy.deepcopy(actor).requires_grad_(False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic_action(obs)


def script_actor(actor: Actor) -> torch.jit.ScriptModule:
    """Compile the deterministic policy with `torch.jit.script`, frozen and optimised.

    `optimize_for_inference` (freeze + constant folding + fusions) measured fastest at batch
    1 among script / script+freeze / optimize_for_inference (benchmarks/export_latency.py).
    """
    with quiet_torchscript():
        scripted = torch.jit.script(InferenceActor(actor).eval())
        return torch.jit.optimize_for_inference(scripted)


def load_exported(path: str | Path) -> torch.jit.ScriptModule:
    """Load a TorchScript actor saved by `export_actor`, refusing one that does more than
    tensor maths (`rl_core.policy.actor_audit`) before any of its code runs."""
    path = Path(path)
    check_archive(path)
    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu")
    check_graphs(module, path.name)
    return module


def exported_policy(exported: ExportedActor) -> Policy:
    """An exported actor as an `evaluate()` policy: one observation in, one action out."""

    @torch.inference_mode()
    def policy(obs: np.ndarray) -> np.ndarray:
        return exported(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()

    return policy


@dataclass(frozen=True)
class ExportResult:
    """Where the exported file went and how closely it matches the eager actor."""

    path: Path
    max_abs_diff: float
    n_checked: int


def export_actor(
    actor: Actor, path: str | Path, env: EnvSpec | str, *, n_random: int = 512, seed: int = 0
) -> ExportResult:
    """Script, save, reload and check the actor; raise `ExportMismatchError` on a mismatch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_torchscript():
        torch.jit.save(script_actor(actor), str(path))
    return check_export(actor, load_exported(path), path, env, n_random=n_random, seed=seed)


def check_export(
    actor: Actor,
    reloaded: ExportedActor,
    path: Path,
    env: EnvSpec | str,
    *,
    n_random: int = 512,
    seed: int = 0,
) -> ExportResult:
    """Compare the actor saved at `path` (`reloaded` from it) with the eager `actor` on random
    and real observations; on a mismatch delete the file and raise `ExportMismatchError`.

    Every export format goes through here: one set of observations, one tolerance."""
    observations = torch.cat(
        [random_observations(env, n_random, seed), real_observations(actor, env, seed)]
    )
    max_diff = max_action_difference(actor, reloaded, observations)
    if not max_diff <= EQUIVALENCE_TOLERANCE:  # also catches NaN
        path.unlink()  # never leave a file behind that could be shipped by mistake
        raise ExportMismatchError(
            f"exported actor at {path} differs from the eager actor by {max_diff:.3g} "
            f"(tolerance {EQUIVALENCE_TOLERANCE:g}) on {len(observations)} observations"
        )
    return ExportResult(path, max_diff, len(observations))


@torch.inference_mode()
def max_action_difference(
    actor: Actor, exported: ExportedActor, observations: torch.Tensor
) -> float:
    """Largest absolute action difference between eager and exported actor."""
    eager = actor.deterministic_action(observations)
    return float((exported(observations) - eager).abs().max())


def random_observations(env: EnvSpec | str, n: int, seed: int) -> torch.Tensor:
    """Observations drawn uniformly from the (clipped) observation space."""
    made = make_env(env)
    space = made.observation_space
    made.close()
    low = np.clip(space.low, -10.0, 10.0)
    high = np.clip(space.high, -10.0, 10.0)
    sample = np.random.default_rng(seed).uniform(low, high, size=(n, *space.shape))
    return torch.as_tensor(sample, dtype=torch.float32)


@torch.inference_mode()
def real_observations(
    actor: Actor, env: EnvSpec | str, seed: int, steps: int = 200
) -> torch.Tensor:
    """Observations the policy actually visits in one episode of the env."""
    env = make_env(env)
    obs, _ = env.reset(seed=seed)
    visited = [obs]
    for _ in range(steps - 1):
        action = actor.deterministic_action(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
        obs, _, terminated, truncated, _ = env.step(action.numpy())
        visited.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return torch.as_tensor(np.stack(visited), dtype=torch.float32)
