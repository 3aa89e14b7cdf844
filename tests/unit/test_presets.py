"""Tuned presets: applied by env id, under anything the user sets, recorded, and each preset
env builds, trains a few hundred steps and exports (the learning figures come from
benchmarks/vs_sb3.py, not from here)."""

from __future__ import annotations

import pytest
import torch

from rl_core.common.config import ConfigError, SACConfig, build_config, load_config
from rl_core.common.presets import PRESETS
from rl_core.policy.policy_model import save_policy_model
from rl_core.run.training import train


def test_a_preset_applies_by_env_id_under_what_the_user_sets() -> None:
    config = build_config({"env_id": "LunarLanderContinuous-v3", "tau": 0.02})
    assert config.hidden_sizes == (400, 300)  # the preset
    assert config.learning_rate_schedule == "linear"
    assert config.learning_starts == 10_000
    assert config.tau == 0.02  # the user's value wins
    assert config.applied_preset == "LunarLanderContinuous-v3"


def test_presets_can_be_switched_off_and_other_envs_have_none() -> None:
    plain = build_config({"env_id": "LunarLanderContinuous-v3", "use_preset": False})
    assert plain.hidden_sizes == SACConfig().hidden_sizes
    assert plain.applied_preset is None
    assert build_config({"env_id": "PointReach-v0"}).applied_preset is None


def test_the_cli_and_config_files_get_presets_too(tmp_path) -> None:
    path = tmp_path / "hopper.yaml"
    path.write_text("env_id: Hopper-v5\nbatch_size: 128\n")
    config = load_config(path, ["seed=3"])
    assert (config.learning_rate, config.learning_starts) == (3e-4, 10_000)
    assert (config.batch_size, config.seed) == (128, 3)


def test_a_resolved_config_rebuilds_to_itself() -> None:
    """Checkpoints store the resolved config; rebuilding it must not re-apply anything."""
    config = build_config({"env_id": "Walker2d-v5", "learning_rate": 1e-4})
    assert build_config(config.resolved()) == config


def test_the_linear_schedule_decays_the_learning_rate_to_zero() -> None:
    """SB3's `lin_<lr>`: lr times the fraction of the run still to go, set each update."""
    values = {"total_timesteps": 400, "learning_starts": 100, "hidden_sizes": [16, 16]}
    config = build_config({**values, "batch_size": 16, "learning_rate_schedule": "linear"})
    assert [config.learning_rate_at(step) for step in (0, 100, 400)] == pytest.approx(
        [1e-3, 0.75e-3, 0.0]
    )
    assert build_config(values).learning_rate_at(300) == 1e-3  # constant by default
    agent = train(config, show_progress=False).agent
    for optimizer in (agent.critic_optimizer, agent.policy_optimizer):
        assert optimizer.lr == 0.0  # the last update ran at the end of the schedule


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_every_preset_env_builds_trains_and_exports(env_id: str, tmp_path) -> None:
    config = build_config(
        {
            "env_id": env_id,
            "total_timesteps": 300,
            "learning_starts": 100,
            "batch_size": 32,
            "buffer_size": 1_000,
            "hidden_sizes": [32, 32],
            "train_freq": 1,
            "gradient_steps": 1,
            "torch_threads": 1,
        }
    )
    result = train(config, show_progress=False)
    assert result.steps == 300
    meta = save_policy_model(result.agent.actor, config.env, tmp_path / "policy")
    assert meta.env_id == env_id
    assert torch.isfinite(result.agent.log_alpha).all()


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"log_std_init": -2.0}, "log_std_init (-2.0)"),
        ({"sde_sample_freq": 4, "log_std_init": -1.0}, "sde_sample_freq (4), log_std_init (-1.0)"),
        (
            {"env_id": "MountainCarContinuous-v0", "use_sde": False, "log_std_init": -1.0},
            "log_std_init (-1.0)",
        ),
    ],
)
def test_a_gsde_field_set_without_gsde_is_refused_by_name(values, refused) -> None:
    with pytest.raises(ConfigError) as err:
        build_config(values)
    assert str(err.value) == (
        f"invalid SAC config: {refused} only acts with use_sde: set use_sde=true, or leave it unset"
    )


def test_gsde_fields_at_their_default_or_preset_value_are_fine_without_gsde() -> None:
    assert not build_config({"log_std_init": -3.0, "sde_sample_freq": -1}).use_sde
    off = build_config({"env_id": "MountainCarContinuous-v0", "use_sde": False})
    assert (off.use_sde, off.log_std_init) == (False, -3.67)  # the preset's gSDE switched off
    assert build_config(off.resolved()) == off  # and it rebuilds
    assert build_config({"use_sde": True, "log_std_init": -2.0}).log_std_init == -2.0
