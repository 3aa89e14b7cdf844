"""Which environment to train on, and building it with errors that say what is wrong.

An `EnvSpec` is everything needed to build the same env again on another machine: the id
(a registered one, or gymnasium's `"module:EnvId-v0"` form), the modules to import first
(RL-Zoo's `--gym-packages`) and the keyword arguments for `gymnasium.make`. It travels with
the config, the actor file and the exported policy, so evaluation, export and the drift
monitor build the env the policy was trained on.

Packages can also offer envs through the `rlops.envs` entry-point group: the entry point's
name is the env id, its value the env class (`"my_pkg.envs:MyEnv"`). They are registered with
gymnasium on first use, without importing the package until the env is made.

`make_env` is the one place a spec's modules are imported and its kwargs reach an env, so it
refuses first what a run's conf may not ask of a worker (rl_core/envs/env_guard.py): a module
outside the allowlist, a keyword argument naming a file. Every path (the CLI, the pipeline
and tuning DAGs, evaluation, export, the monitor) builds its env through it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl_core.envs.env_guard import env_refusals
from rl_core.envs.env_plugins import offered_envs


class EnvError(ValueError):
    """The env cannot be built, or its spaces are not what SAC needs; the message says which."""


@dataclass(frozen=True)
class EnvSpec:
    """How to build one env: id, modules imported first, keyword arguments for `make`."""

    id: str
    packages: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, env: EnvSpec | str) -> EnvSpec:
        """An EnvSpec as is, or the spec of a bare env id."""
        return env if isinstance(env, EnvSpec) else cls(env)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EnvSpec:
        return cls(raw["id"], tuple(raw.get("packages", ())), dict(raw.get("kwargs", {})))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "packages": list(self.packages), "kwargs": dict(self.kwargs)}

    def __str__(self) -> str:
        extras = [f"packages {list(self.packages)}"] * bool(self.packages)
        extras += [f"kwargs {json.dumps(dict(self.kwargs), sort_keys=True)}"] * bool(self.kwargs)
        return self.id + (f" ({', '.join(extras)})" if extras else "")


@functools.cache
def register_entry_point_envs() -> tuple[str, ...]:
    """Register every env offered in the `rlops.envs` entry-point group; their ids."""
    offered = offered_envs()
    for env_id, entry_point in offered.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
    return tuple(offered)


def _import(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise EnvError(
            f"{what}: cannot import {module!r} ({exc}); install the package that provides it"
        ) from None


def make_env(env: EnvSpec | str, render_mode: str | None = None) -> gym.Env:
    """Build the env and check SAC can act in it: a bounded Box action space and a flat Box
    observation space. Modules and kwargs a conf may not ask for are refused before any
    import. Every failure is one `EnvError` naming the env and what is wrong.
    `render_mode` goes to `gymnasium.make` when given (a video asks for "rgb_array")."""
    spec = EnvSpec.of(env)
    refused = env_refusals(spec.id, spec.packages, spec.kwargs)
    if refused:
        raise EnvError(f"env {spec.id!r}: {'; '.join(refused)}")
    register_entry_point_envs()
    for package in spec.packages:
        _import(package, f"env {spec.id!r}: env_packages")
    module, _, name = spec.id.rpartition(":")
    if module:
        _import(module, f"env {spec.id!r}: the module before ':'")
    try:
        rendering = {} if render_mode is None else {"render_mode": render_mode}
        made = gym.make(spec.id, **{**spec.kwargs, **rendering})
    except gym.error.UnregisteredEnv:
        raise EnvError(_unknown_id_message(spec.id, name)) from None
    except Exception as exc:  # the env's own constructor refused its arguments
        given = f" with env_kwargs {json.dumps(dict(spec.kwargs))}" if spec.kwargs else ""
        raise EnvError(
            f"env {spec.id!r} could not be built{given}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        _check_spaces(spec.id, made)
    except EnvError:
        made.close()
        raise
    return made


def _unknown_id_message(env_id: str, name: str) -> str:
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; closest registered: {', '.join(close)}" if close else ""
    return (
        f"unknown env id {env_id!r}{hint} (a registered id, or 'module:EnvId-v0' with the "
        "module that registers it; env_packages imports modules first)"
    )


def _check_spaces(env_id: str, env: gym.Env) -> None:
    action_space, observation_space = env.action_space, env.observation_space
    if not isinstance(action_space, spaces.Box):
        raise EnvError(
            f"env {env_id!r} has action space {action_space!r}; SAC needs a continuous "
            "gymnasium.spaces.Box action space"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise EnvError(f"env {env_id!r} has an unbounded action space {action_space!r}")
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise EnvError(
            f"env {env_id!r} has observation space {observation_space!r}; a flat "
            "gymnasium.spaces.Box (one dimension) is needed: flatten it with a wrapper"
        )


@dataclass(frozen=True)
class EnvSummary:
    """What a built env offers SAC (what `validate_env` reports)."""

    env: str
    obs_dim: int
    act_dim: int
    action_low: list[float]
    action_high: list[float]
    max_episode_steps: int | None


def describe_env(env: EnvSpec | str) -> EnvSummary:
    """Build the env once, check it, and say what it offers; `EnvError` if it cannot serve."""
    spec = EnvSpec.of(env)
    made = make_env(spec)
    try:
        obs_dim, act_dim = space_dims(made)
        return EnvSummary(
            str(spec),
            obs_dim,
            act_dim,
            made.action_space.low.tolist(),
            made.action_space.high.tolist(),
            made.spec.max_episode_steps if made.spec else None,
        )
    finally:
        made.close()


def space_dims(env: gym.Env) -> tuple[int, int]:
    """Flat observation and action sizes."""
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def env_spec_version(env_id: str) -> int | None:
    """The registered version of an env id (the `v1` of Pendulum-v1), for lineage; the env
    must have been made once (its module imported, its entry point registered)."""
    return gym.spec(env_id.rpartition(":")[2]).version


def to_env_action(squashed: np.ndarray, action_space: spaces.Box) -> np.ndarray:
    """Map an action from [-1, 1] (the space SAC learns in) to the env's [low, high]."""
    low, high = action_space.low, action_space.high
    return (low + (squashed + 1.0) * 0.5 * (high - low)).astype(action_space.dtype)
