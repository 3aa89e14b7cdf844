"""A run's settings are resolved once, by `validate_conf`: later tasks read its XCom (and
`register` the config the candidate's run logged), never today's presets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import yaml
from mlflow import MlflowClient

from rl_core.common.artifact_names import CONFIG_ARTIFACT
from rl_core.common.presets import PRESETS
from rl_core.common.tracking import logged_config
from rl_core.policy.policy_model import log_policy_model
from rl_core.sac.networks import Actor
from rlops_airflow import dag_tasks
from rlops_airflow.mlflow_run import AirflowRun, get_or_create_candidate_run
from rlops_airflow.settings import PipelineSettings
from rlops_airflow.stages.register import register_candidate
from rlops_registry import tags
from tests.pipeline.conftest import TINY_SAC

DAG = "rlops_sac_pipeline"
CONF = {
    "total_timesteps": 1_000,
    "checkpoint_every": 1_000,
    "eval_episodes": 2,
    "record_video": False,
    "sac_overrides": {**TINY_SAC, "learning_starts": 980},  # 20 updates: seconds
    "registered_model_name": "rlops-test-model",
}


def _airflow_task_context(run_id: str) -> dict:
    """The context values `train` asks Airflow for: its DAG run and task instance."""
    dag_run = SimpleNamespace(dag_id=DAG, run_id=run_id)
    return {"dag_run": dag_run, "ti": SimpleNamespace(xcom_push=lambda **_: None)}


def test_a_preset_changed_after_validate_conf_changes_nothing(
    pipeline_store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    validated = dag_tasks.validate_conf.function(params=CONF)
    assert validated["recipe"]["learning_rate"] == 1e-3  # Pendulum's preset, at validation
    monkeypatch.setitem(PRESETS, "Pendulum-v1", {"learning_rate": 4.2e-4, "gamma": 0.5})
    assert PipelineSettings(**CONF).sac_config().learning_rate == 4.2e-4  # the patch bites
    trained = dag_tasks.train.function(
        seed=3, settings=validated, **_airflow_task_context("manual__presets")
    )
    logged = logged_config(trained["mlflow_run_id"])
    assert (logged.learning_rate, logged.gamma, logged.seed) == (1e-3, 0.99, 3)
    assert logged.resolved() == {**validated["recipe"], "seed": 3}


def test_register_hashes_the_config_the_run_logged(pipeline_store) -> None:
    """Not the one the settings would resolve now: the recipe the candidate trained with."""
    settings = PipelineSettings(**CONF).resolve()
    airflow = AirflowRun(DAG, "manual__logged")
    run_id = get_or_create_candidate_run(airflow, seed=0, run_name="logged")
    trained_with = {**settings.sac_config(0).resolved(), "learning_rate": 5e-4}
    MlflowClient().log_text(run_id, yaml.safe_dump(trained_with), CONFIG_ARTIFACT)
    torch.manual_seed(0)
    actor = Actor(3, 1, (16, 16), torch.tensor([-2.0]), torch.tensor([2.0]))
    logged = log_policy_model(actor, "Pendulum-v1", run_id)
    exported = {"model_uri": logged.model_uri, "model_id": logged.model_id}
    candidate = {"mlflow_run_id": run_id, "seed": 0, "mean_return": -150.0, "returns": [-150.0]}
    registered = register_candidate(settings, airflow, candidate, exported, {"speedup": 2.0})
    version = MlflowClient().get_model_version(registered["model_name"], registered["version"])
    assert version.tags[tags.CONFIG_HASH] == logged_config(run_id).config_hash()
    assert version.tags[tags.CONFIG_HASH] != settings.sac_config(0).config_hash()
