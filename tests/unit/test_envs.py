import numpy as np
import pytest
from gymnasium import spaces

from rl_core.envs import EnvError, make_env, to_env_action


def test_unknown_env_id_is_named() -> None:
    with pytest.raises(EnvError, match="unknown gymnasium env id 'NoSuchEnv-v9'"):
        make_env("NoSuchEnv-v9")


def test_discrete_action_space_is_refused_with_what_was_found() -> None:
    with pytest.raises(EnvError, match=r"'CartPole-v1' has action space Discrete\(2\)"):
        make_env("CartPole-v1")


def test_continuous_env_is_accepted() -> None:
    env = make_env("MountainCarContinuous-v0")
    assert isinstance(env.action_space, spaces.Box)
    env.close()


def test_to_env_action_maps_unit_interval_to_bounds() -> None:
    space = spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 1.0], np.float32))
    squashed = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(
        to_env_action(squashed, space), [[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]]
    )
