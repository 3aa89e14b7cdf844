"""A drift rollback's retrain: the conf is the rolled-back version's own recipe, read back from
what its run logged, and a second drift-triggered run of a model within the cooldown is refused
(the same run retried is not a second one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from mlflow import MlflowClient

from rl_core.common.artifact_names import CONFIG_ARTIFACT
from rl_core.common.config import build_config
from rlops_airflow import assets
from rlops_airflow.retrain import (
    Degradation,
    RetrainError,
    RetrainMark,
    claim_retrain,
    cooldown_refusal,
    retrain_conf,
)
from rlops_airflow.settings import PipelineSettings
from rlops_registry import tags
from rlops_registry.registry import ModelRegistry
from tests.serving.policies import register_policy

MODEL = "rlops-drift-retrain"
NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SIX_HOURS = timedelta(hours=6)


def _trained_version(values: dict) -> tuple[str, str]:
    """A registered version whose run logged `values`' resolved config as training does;
    returns its number and the config's hash."""
    version = register_policy(MODEL, reward=-150.0, seed=3)
    config = build_config(values)
    run_id = ModelRegistry(MODEL).version(version).run_id
    MlflowClient().log_text(run_id, yaml.safe_dump(config.resolved()), CONFIG_ARTIFACT)
    return version, config.config_hash()


def _drift(version: str) -> Degradation:
    return Degradation(MODEL, version, "1", "2 consecutive breaches")


def test_the_conf_trains_the_rolled_back_versions_recipe_again(mlflow_store) -> None:
    recipe = {
        "env_id": "Pendulum-v1",
        "env_kwargs": {"g": 9.0},
        "total_timesteps": 3_000,
        "seed": 17,
        "checkpoint_every": 1_000,
        "eval_seeds": list(range(2000, 2005)),
        "hidden_sizes": [48, 48],
        "learning_rate": 7e-4,
    }
    version, config_hash = _trained_version(recipe)

    conf = retrain_conf(_drift(version))

    assert conf["env_id"] == "Pendulum-v1" and conf["env_kwargs"] == {"g": 9.0}
    assert (conf["total_timesteps"], conf["seed"]) == (3_000, 17)
    assert (conf["eval_seed_start"], conf["eval_episodes"]) == (2000, 5)
    assert conf["sac_overrides"] == {"hidden_sizes": [48, 48], "learning_rate": 7e-4}
    assert conf["registered_model_name"] == MODEL
    assert conf["drift_retrain_of"] == f"{MODEL}@v{version}"
    settings = PipelineSettings(**conf)  # what validate_conf returns to every later task
    assert settings.sac_config().config_hash() == config_hash
    assert settings.model_name == MODEL


def test_a_version_without_a_logged_config_is_refused_by_name(mlflow_store) -> None:
    version = register_policy(MODEL, reward=-150.0)
    with pytest.raises(RetrainError, match=rf"{MODEL} v{version}: its training config"):
        retrain_conf(_drift(version))


def test_an_event_without_its_fields_is_refused_naming_them() -> None:
    with pytest.raises(RetrainError, match="without rolled_back_version, reason"):
        Degradation.from_extra({assets.MODEL_NAME: MODEL})
    drift = Degradation(MODEL, "4", None, "breach")
    assert Degradation.from_extra(drift.as_extra()) == drift


@pytest.mark.parametrize(
    ("previous", "hours_later", "refused"),
    [
        (None, 0, False),  # the model's first drift retrain
        ("dag/run-a", 5.9, True),  # another run within the cooldown
        ("dag/run-a", 6, False),  # the cooldown is over
        ("dag/run-b", 0.1, False),  # the same run again: a retry or a cleared task
    ],
)
def test_the_cooldown_allows_one_drift_run_per_model(previous, hours_later, refused) -> None:
    mark = RetrainMark(previous, NOON) if previous else None
    refusal = cooldown_refusal(mark, "dag/run-b", NOON + timedelta(hours=hours_later), SIX_HOURS)
    assert (refusal is not None) == refused
    if refused:
        assert "within the cooldown of 6 h (drift_retrain_cooldown_hours)" in refusal
        assert "dag/run-a retrained this model 5.9 h ago" in refusal


def test_the_cooldown_is_recorded_on_the_model_once_per_run(mlflow_store) -> None:
    register_policy(MODEL, reward=-150.0)
    assert claim_retrain(MODEL, "pipeline/run-1", NOON, SIX_HOURS) is None
    assert claim_retrain(MODEL, "pipeline/run-1", NOON, SIX_HOURS) is None  # its retry
    later = NOON + timedelta(hours=1)
    assert "pipeline/run-1 retrained" in claim_retrain(MODEL, "pipeline/run-2", later, SIX_HOURS)
    recorded = MlflowClient().get_registered_model(MODEL).tags[tags.DRIFT_RETRAIN_LAST]
    assert RetrainMark.from_tag(recorded) == RetrainMark("pipeline/run-1", NOON)  # unchanged
    assert claim_retrain(MODEL, "pipeline/run-3", NOON + SIX_HOURS, SIX_HOURS) is None
