"""One-file checkpoints that resume training exactly.

A checkpoint holds the agent (actor, critics, targets, optimizers, entropy coefficient), the
replay buffer's filled rows, every RNG state, the step counter, the episode history and the
resolved config. It is written at an episode boundary, so the environment needs nothing but
its RNG state to continue, and saved with plain tensors so `torch.load(weights_only=True)`
can read it safely.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_core.agent import SAC
from rl_core.config import SACConfig, stored_config
from rl_core.envs import EnvSpec, make_env, space_dims
from rl_core.networks import Actor, ActorSpec

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A file that is no checkpoint or actor file of rlops: missing, foreign or truncated."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _read(path: str | Path, what: str) -> dict[str, Any]:
    """`torch.load` (tensors and plain values only) of `path`; every way a file can fail to
    be one `what` is a `CheckpointError` naming it, never a bare unpickling error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(path, "no such file") from None
    except IsADirectoryError:
        raise CheckpointError(path, f"a folder, not {what}") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        detail = str(exc).strip().split(". ")[0] or f"{type(exc).__name__}: the file ends early"
        raise CheckpointError(path, f"not {what} ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, f"not {what} (it holds a {type(state).__name__})")
    return state


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` (plus a format version) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **_to_torch(state)}, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint behind
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`."""
    state = _read(path, "an rlops training checkpoint")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            path,
            f"not an rlops checkpoint of format {CHECKPOINT_FORMAT} "
            f"(found format {state.get('format')!r})",
        )
    return state


def _to_torch(value: Any) -> Any:
    """Numpy arrays become tensors so the file loads with `weights_only=True`."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {key: _to_torch(item) for key, item in value.items()}
    return value


ACTOR_FORMAT = 1


def save_actor(path: str | Path, actor: Actor, env: EnvSpec | str) -> Path:
    """The policy alone: spec, weights and env spec, a few hundred KiB instead of the whole
    training state (replay rows, critics, optimizer moments)."""
    env = EnvSpec.of(env)
    state = {"spec": asdict(actor.spec), "env": env.as_dict(), "actor": actor.state_dict()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"actor_format": ACTOR_FORMAT, **state}, path)
    return path


def load_actor(path: str | Path) -> tuple[Actor, EnvSpec]:
    """The trained actor and its env spec, from an actor file or a whole training checkpoint.

    Needs no env, critics or optimizers: the spec saved beside the weights builds it.
    """
    state = _read(path, "an rlops actor file or training checkpoint")
    if state.get("actor_format") == ACTOR_FORMAT:
        spec, weights = state["spec"], state["actor"]
        # Actor files written before env specs existed name the env id alone.
        env = EnvSpec.from_dict(state["env"]) if "env" in state else EnvSpec(state["env_id"])
    elif state.get("format") == CHECKPOINT_FORMAT and "actor_spec" in state:
        spec, weights = state["actor_spec"], state["agent"]["actor"]
        env = stored_config(state["config"]).env
    elif state.get("format") == CHECKPOINT_FORMAT:  # written before checkpoints had a spec
        agent, config = load_agent(path)
        return agent.actor, config.env
    else:
        raise CheckpointError(path, "neither an rlops actor file nor a training checkpoint")
    actor = Actor.from_spec(ActorSpec(**spec))
    actor.load_state_dict(weights)
    return actor, env


def load_agent(path: str | Path) -> tuple[SAC, SACConfig]:
    """The trained agent and its config from a checkpoint file (to resume or inspect it)."""
    state = load_checkpoint(path)
    config = stored_config(state["config"])
    env = make_env(config.env)
    obs_dim, act_dim = space_dims(env)
    agent = SAC(config, obs_dim, act_dim, env.action_space.low, env.action_space.high)
    env.close()
    agent.load_state_dict(state["agent"])
    return agent, config
