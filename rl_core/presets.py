"""Tuned SAC hyperparameters by env: the values RL-Zoo publishes (its `hyperparams/sac.yml`).

`build_config` applies the preset of the config's `env_id` under whatever the user sets:
SACConfig's defaults < the preset < the user's values. Every preset value is a SACConfig
field, so a preset is validated like any config. RL-Zoo's `n_timesteps` is not part of a
preset: the run length is always the caller's choice (`total_timesteps`).

Where RL-Zoo's recipe needs what rlops does not implement, the preset says so in `NOT_APPLIED`
and the rest of the recipe still applies: BipedalWalker-v3's recipe explores with gSDE
(`use_sde`, `log_std_init=-3`); rlops explores with SAC's plain Gaussian noise.
"""

from __future__ import annotations

from typing import Any

_MUJOCO = {"learning_rate": 3e-4, "learning_starts": 10_000}
"""RL-Zoo's MuJoCo recipe: SB3's SAC defaults (lr 3e-4) after 10k uniform warm-up steps."""

PRESETS: dict[str, dict[str, Any]] = {
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
        "hidden_sizes": (400, 300),
    },
    "HalfCheetah-v5": _MUJOCO,
    "Hopper-v5": _MUJOCO,
    "Walker2d-v5": _MUJOCO,
    "Ant-v5": _MUJOCO,
}

NOT_APPLIED: dict[str, str] = {
    "BipedalWalker-v3": "gSDE exploration (use_sde, log_std_init=-3)",
}


def preset_for(env_id: str) -> dict[str, Any]:
    """The preset of `env_id` (a copy), or an empty dict when RL-Zoo publishes none."""
    return dict(PRESETS.get(env_id, {}))
