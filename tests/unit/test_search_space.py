"""The SAC search space: every env's default holds its preset, a narrowing replaces what it
names, every point is a config SAC accepts, and a bad space is refused naming the dimension."""

from __future__ import annotations

import optuna
import pytest

from rl_core.common.config import build_config
from rl_core.common.presets import PRESETS
from rl_core.common.search_space import (
    SearchSpaceError,
    preset_point,
    sac_overrides,
    search_space,
)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", *PRESETS])
def test_every_default_space_holds_the_env_preset(env_id: str) -> None:
    preset = preset_point(env_id, act_dim=3)
    assert search_space(env_id).contains(preset)
    config = build_config({"env_id": env_id})
    values = sac_overrides(preset, act_dim=3)
    assert values["learning_rate"] == config.learning_rate
    assert tuple(values["hidden_sizes"]) == config.hidden_sizes
    assert values["target_entropy"] == -3.0  # "auto": -dim(actions)


def test_a_narrowing_replaces_only_the_dimensions_it_names() -> None:
    default = search_space("Pendulum-v1")
    narrowed = search_space(
        "Pendulum-v1",
        {"learning_rate": {"low": 5e-4, "high": 5e-4}, "batch_size": {"choices": [128]}},
    )
    assert (narrowed.learning_rate.low, narrowed.learning_rate.high) == (5e-4, 5e-4)
    assert narrowed.batch_size.choices == [128]
    assert narrowed.tau == default.tau and narrowed.gamma == default.gamma
    assert not narrowed.contains(preset_point("Pendulum-v1", 1))  # lr 1e-3 is outside


def test_every_drawn_point_is_in_the_space_and_a_valid_sac_config() -> None:
    space = search_space("Pendulum-v1", {"hidden_sizes": {"choices": [[32], [16, 16, 16]]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        params = space.suggest(study.ask())
        assert space.contains(params)
        config = build_config({"env_id": "Pendulum-v1", **sac_overrides(params, act_dim=1)})
        assert config.gradient_steps == config.train_freq  # one update per step on average
        assert config.hidden_sizes in {(32,), (16, 16, 16)}
        assert 1e-4 <= config.learning_rate <= 3e-3


@pytest.mark.parametrize(
    ("narrowing", "named"),
    [
        ({"learnig_rate": {"low": 1e-3, "high": 1e-2}}, "search_space.learnig_rate: unknown"),
        ({"learnig_rate": {}}, "did you mean learning_rate?"),
        ({"tau": {"low": 0.05, "high": 0.01}}, "search_space.tau: empty range: low 0.05"),
        ({"batch_size": {"choices": []}}, "search_space.batch_size.choices"),
        ({"gamma": {"choices": [0.99, 0.99]}}, "search_space.gamma: choices repeat"),
        ({"gamma": {"choices": ["0.99"]}}, "search_space.gamma.choices.0"),
        ({"gamma": [0.99]}, "search_space.gamma: Input should be a valid dictionary"),
        ({"learning_rate": {"low": 1e-3, "high": 2.0}}, "search_space.learning_rate.high"),
        ({"train_freq": {"choices": [2000]}}, "search_space.train_freq.choices.0"),
        ({"hidden_sizes": {"choices": [[0, 64]]}}, "search_space.hidden_sizes.choices.0.0"),
        ({"target_entropy_per_action": {"low": "-1", "high": 0}}, "target_entropy_per_action.low"),
    ],
)
def test_a_bad_space_is_refused_naming_the_dimension(narrowing: dict, named: str) -> None:
    with pytest.raises(SearchSpaceError, match="invalid search space") as refused:
        search_space("Pendulum-v1", narrowing)
    assert named in str(refused.value)
