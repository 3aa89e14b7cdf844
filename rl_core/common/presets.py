"""Tuned SAC hyperparameters by env: the values RL-Zoo publishes (its `hyperparams/sac.yml`).

`build_config` applies the preset of the config's `env_id` under whatever the user sets:
SACConfig's defaults < the preset < the user's values. Every preset value is a SACConfig
field, so a preset is validated like any config. RL-Zoo's `n_timesteps` is not part of a
preset: the run length is always the caller's choice (`total_timesteps`).

MountainCarContinuous-v0 and BipedalWalker-v3 explore with gSDE (`use_sde`): RL-Zoo's
`policy_kwargs` `log_std_init` and `net_arch` are the fields of the same names here.
"""

from __future__ import annotations

from typing import Any

_MUJOCO = {"learning_rate": 3e-4, "learning_starts": 10_000}
"""RL-Zoo's MuJoCo recipe: SB3's SAC defaults (lr 3e-4) after 10k uniform warm-up steps."""

PRESETS: dict[str, dict[str, Any]] = {
    "MountainCarContinuous-v0": {
        "learning_rate": 3e-4,
        "buffer_size": 50_000,
        "batch_size": 512,
        "ent_coef": 0.1,
        "train_freq": 32,
        "gradient_steps": 32,
        "gamma": 0.9999,
        "tau": 0.01,
        "learning_starts": 0,
        "use_sde": True,
        "log_std_init": -3.67,
        "hidden_sizes": (64, 64),
    },
    "Pendulum-v1": {"learning_rate": 1e-3},
    "LunarLanderContinuous-v3": {
        "learning_rate": 7.3e-4,
        "learning_rate_schedule": "linear",
        "buffer_size": 1_000_000,
        "batch_size": 256,
        "gamma": 0.99,
        "tau": 0.01,
        "train_freq": 1,
        "gradient_steps": 1,
        "learning_starts": 10_000,
        "hidden_sizes": (400, 300),
    },
    "BipedalWalker-v3": {
        "learning_rate": 7.3e-4,
        "buffer_size": 300_000,
        "batch_size": 256,
        "gamma": 0.98,
        "tau": 0.02,
        "train_freq": 64,
        "gradient_steps": 64,
        "learning_starts": 10_000,
        "use_sde": True,
        "log_std_init": -3.0,
        "hidden_sizes": (400, 300),
    },
    "HalfCheetah-v5": _MUJOCO,
    "Hopper-v5": _MUJOCO,
    "Walker2d-v5": _MUJOCO,
    "Ant-v5": _MUJOCO,
}


def preset_for(env_id: str) -> dict[str, Any]:
    """The preset of `env_id` (a copy), or an empty dict when RL-Zoo publishes none."""
    return dict(PRESETS.get(env_id, {}))
