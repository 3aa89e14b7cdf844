"""Which registered model a pipeline run goes to when it does not name one."""

from __future__ import annotations

import re

import pytest

from rlops_airflow.settings import PipelineSettings
from rlops_registry.names import default_model_name

REGISTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # the form's pattern


@pytest.mark.parametrize(
    ("env_id", "name"),
    [
        ("Pendulum-v1", "rlops-sac-pendulum"),  # the name earlier releases registered
        ("MountainCarContinuous-v0", "rlops-sac-mountaincarcontinuous"),
        ("HalfCheetah-v5", "rlops-sac-halfcheetah"),
        ("my_envs.arm:Reacher-v2", "rlops-sac-reacher"),
        ("ALE/Pong-v5", "rlops-sac-pong"),
        ("Custom Env v1", "rlops-sac-custom-env-v1"),
        ("Cart.Pole_2", "rlops-sac-cart.pole_2"),
    ],
)
def test_the_default_name_is_the_envs_name(env_id: str, name: str) -> None:
    assert default_model_name(env_id) == name


def test_a_long_env_name_still_makes_a_valid_registry_name() -> None:
    name = default_model_name("pkg:" + "VeryLong" * 20 + "-v0")
    assert REGISTRY_NAME.match(name) and len(name) == 100


def test_settings_name_their_model_after_the_env_unless_told() -> None:
    assert PipelineSettings(env_id="PointReach-v0").model_name == "rlops-sac-pointreach"
    assert PipelineSettings().model_name == "rlops-sac-pendulum"
    named = PipelineSettings(env_id="PointReach-v0", registered_model_name="reach")
    assert named.model_name == "reach"
