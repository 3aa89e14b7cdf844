"""Creating gymnasium environments SAC can act in, with clear errors for those it cannot."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class EnvError(ValueError):
    """The env id is unknown or its spaces are not what SAC needs."""


def make_env(env_id: str) -> gym.Env:
    """Make `env_id` and check it has a Box observation space and a bounded Box action space."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        raise EnvError(f"unknown gymnasium env id {env_id!r}: {exc}") from None
    action_space = env.action_space
    if not isinstance(action_space, spaces.Box):
        env.close()
        raise EnvError(
            f"env {env_id!r} has action space {action_space!r}; SAC needs a continuous "
            "gymnasium.spaces.Box action space"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        env.close()
        raise EnvError(f"env {env_id!r} has an unbounded action space {action_space!r}")
    if not isinstance(env.observation_space, spaces.Box):
        env.close()
        raise EnvError(
            f"env {env_id!r} has observation space {env.observation_space!r}; "
            "a flat gymnasium.spaces.Box is needed"
        )
    return env


def space_dims(env: gym.Env) -> tuple[int, int]:
    """Flat observation and action sizes."""
    return int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))


def env_spec_version(env_id: str) -> int | None:
    """The registered version of an env id (the `v1` of Pendulum-v1), for lineage."""
    return gym.spec(env_id).version


def to_env_action(squashed: np.ndarray, action_space: spaces.Box) -> np.ndarray:
    """Map an action from [-1, 1] (the space SAC learns in) to the env's [low, high]."""
    low, high = action_space.low, action_space.high
    return (low + (squashed + 1.0) * 0.5 * (high - low)).astype(action_space.dtype)
