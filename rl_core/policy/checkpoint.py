"""One-file checkpoints that resume training exactly.

A checkpoint holds the agent (actor, critics, targets, optimizers, entropy coefficient), the
replay buffer's filled rows, every RNG state, the step counter, the episode history and the
resolved config. It is written at an episode boundary, so the environment needs nothing but
its RNG state to continue, and saved with plain tensors so `torch.load(weights_only=True)`
can read it safely. Both kinds of file are written atomically; one the disk has no room for is
a `DiskFullError` that says where, how much and what to do, and leaves no partial file behind.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_core.common.config import SACConfig, stored_config
from rl_core.envs.spec import EnvSpec, make_env, space_dims
from rl_core.sac.agent import SAC
from rl_core.sac.networks import Actor, ActorSpec

CHECKPOINT_FORMAT = 1
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""errnos of a write the disk (or a quota, or a file-size limit) has no room for."""


class CheckpointError(ValueError):
    """A file that is no checkpoint or actor file of rlops: missing, foreign or truncated."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.reason = reason


class DiskFullError(OSError):
    """A checkpoint or actor file the disk had no room for. The partial file is removed and an
    earlier file at the same path is left as it was: the last one written stays usable."""

    def __init__(self, path: Path, needed: int, free: int) -> None:
        folder = path.parent.resolve()
        temporary = folder.is_relative_to(Path(tempfile.gettempdir()).resolve())
        remedy = "point TMPDIR at a larger disk" if temporary else "write it to a larger disk"
        super().__init__(
            f"no room for {path.name} in {folder}: {_size(free)} free, it needs at least "
            f"{_size(needed)}; free space there or {remedy}"
        )
        self.path, self.needed, self.free = path, needed, free


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 2**20 else f"{nbytes / 2**10:.0f} KiB"


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in `value`: a lower bound of its file's size, known before writing."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(item) for item in value)
    return 0


def _no_room(exc: BaseException | None) -> bool:
    """Whether `exc` or an exception it arose from is a write the disk had no room for (torch
    wraps the OSError of the file in a RuntimeError of its zip writer)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _write(path: str | Path, payload: dict[str, Any]) -> Path:
    """`torch.save` of `payload` to `path`, atomically: a crash or a full disk mid-write never
    leaves a truncated file at `path`, nor a partial one beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("wb") as file:  # a Python file: a full disk raises an OSError with errno
            torch.save(payload, file)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        if _no_room(exc):
            raise DiskFullError(
                path, _nbytes(payload), shutil.disk_usage(path.parent).free
            ) from None
        raise
    os.replace(tmp, path)
    return path


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
    return _write(path, {"format": CHECKPOINT_FORMAT, **_to_torch(state)})


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
    return _write(path, {"actor_format": ACTOR_FORMAT, **state})


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
