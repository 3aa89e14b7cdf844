"""The whole DAG, run by Airflow itself (`airflow dags test`) on SQLite, logging to MLflow."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import airflow_dags_test

DAG_ID = "rlops_sac_pipeline"
TINY = {
    "total_timesteps": 1000,
    "checkpoint_every": 400,
    "eval_episodes": 3,
    "sac_overrides": {"hidden_sizes": [64, 64], "batch_size": 64},
    "registered_model_name": "rlops-e2e",
}


def _last_run_state(env: dict[str, str]) -> tuple[str, str]:
    """Run id and state of the newest DAG run, from Airflow's metadata DB itself."""
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (DAG_ID,),
        ).fetchone()


@pytest.mark.slow
def test_pipeline_promotes_then_guards_the_champion(airflow_db, pipeline_store, tmp_path: Path):
    env = {**os.environ, **airflow_db}
    client = MlflowClient()

    first = airflow_dags_test(DAG_ID, env, {**TINY, "min_reward": -100_000, "min_speedup": 0})
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    run_id, state = _last_run_state(env)
    assert state == "success"

    experiment = client.get_experiment_by_name("rlops-test")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`airflow.run_id` = '{run_id}'"
    )
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["airflow.dag_id"] == DAG_ID
    assert tags["rlops.outcome"] == "promoted"
    assert run.info.status == "FINISHED"
    assert {"eval_mean_return", "speedup_b1", "critic_loss", "episode_return"} <= set(metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "model", "benchmark", "evaluation", "reward_curve.png"} <= artifacts
    version = client.get_model_version_by_alias("rlops-e2e", "champion")
    assert version.run_id == run.info.run_id
    assert version.tags["airflow.run_id"] == run_id
    assert version.tags["gate.reward"] == "passed"
    assert client.get_model_version_by_alias("rlops-e2e", "challenger").version == version.version

    # A sweep of two seeds this time, and a gate nothing can pass.
    second = airflow_dags_test(
        DAG_ID, env, {**TINY, "seed": 1, "n_seeds": 2, "min_reward": 0, "min_speedup": 0}
    )
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    second_run_id, state = _last_run_state(env)
    assert state == "success"  # a rejection is an outcome, not a failure
    candidates = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`airflow.run_id` = '{second_run_id}'"
    )
    assert sorted(int(r.data.params["seed"]) for r in candidates) == [1, 2]  # both kept
    assert {r.info.status for r in candidates} == {"FINISHED"}
    (rejected,) = [r for r in candidates if r.data.tags.get("rlops.selected") == "true"]
    assert rejected.data.tags["rlops.outcome"].startswith("rejected: reward ")
    assert "sweep" in {a.path for a in client.list_artifacts(rejected.info.run_id)}
    assert client.get_model_version_by_alias("rlops-e2e", "champion").version == version.version
    challenger = client.get_model_version_by_alias("rlops-e2e", "challenger")
    assert challenger.version != version.version
    assert challenger.tags["rlops.promotion"] == "rejected"
