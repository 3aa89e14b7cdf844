"""Long training survives: a killed train task resumes from its last uploaded checkpoint."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from rl_core import training
from rl_core.config import ConfigError
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.settings import PipelineSettings
from rlops_airflow.tasks import TRAINED_TAG, train_candidate

AIRFLOW = AirflowRun("rlops_sac_pipeline", "scheduled__resume")


def test_retry_resumes_from_the_last_checkpoint(pipeline_store, tiny_settings, monkeypatch):
    real_checkpoint = training._Run.checkpoint

    def killed_after_first_checkpoint(self, path):
        real_checkpoint(self, path)
        raise RuntimeError("worker killed (execution API token expired)")

    monkeypatch.setattr(training._Run, "checkpoint", killed_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="worker killed"):
        train_candidate(tiny_settings, AIRFLOW, seed=0)
    monkeypatch.setattr(training._Run, "checkpoint", real_checkpoint)

    retried = train_candidate(tiny_settings, AIRFLOW, seed=0)
    assert retried["start_step"] == 200  # the checkpoint at the first episode end
    client = MlflowClient()
    run = client.get_run(retried["mlflow_run_id"])
    assert run.data.tags[TRAINED_TAG] == "true"
    assert run.data.tags["airflow.run_key"] == AIRFLOW.key
    assert run.data.tags["rlops.candidate_key"] == AIRFLOW.candidate_key(0)
    returns = client.get_metric_history(run.info.run_id, "episode_return")
    assert [m.step for m in returns] == [200, 400]  # each episode logged once
    experiment = client.get_experiment_by_name("rlops-test")
    assert len(client.search_runs([experiment.experiment_id])) == 1

    # A retry after training finished does not train again.
    assert train_candidate(tiny_settings, AIRFLOW, seed=0)["start_step"] == 400


def test_bad_sac_override_names_the_field() -> None:
    settings = PipelineSettings(sac_overrides={"batch_size": 0})
    with pytest.raises(ConfigError, match="batch_size"):
        settings.sac_config()
