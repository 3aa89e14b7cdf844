"""Long training survives: a killed train task resumes from its last uploaded checkpoint and
ends exactly where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from rl_core.common.artifact_names import CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE
from rl_core.policy.checkpoint import load_checkpoint
from rl_core.run import training
from rlops_airflow.mlflow_run import AirflowRun, download
from rlops_airflow.stages.train import train_candidate
from rlops_registry import tags

AIRFLOW = AirflowRun("rlops_sac_pipeline", "scheduled__resume")
UNINTERRUPTED = AirflowRun("rlops_sac_pipeline", "scheduled__uninterrupted")


def _final_state(run_id: str, scratch: Path) -> dict:
    path = download(run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", scratch)
    return load_checkpoint(path)


def _assert_same_state(resumed: object, uninterrupted: object, where: str = "") -> None:
    """Equal to the bit: tensors with torch.equal, containers item by item."""
    if isinstance(resumed, torch.Tensor):
        assert torch.equal(resumed, uninterrupted), where
    elif isinstance(resumed, dict):
        assert resumed.keys() == uninterrupted.keys(), where
        for key in resumed:
            _assert_same_state(resumed[key], uninterrupted[key], f"{where}/{key}")
    elif isinstance(resumed, list | tuple):
        assert len(resumed) == len(uninterrupted), where
        for i, (a, b) in enumerate(zip(resumed, uninterrupted, strict=True)):
            _assert_same_state(a, b, f"{where}[{i}]")
    else:
        assert resumed == uninterrupted, where


def test_retry_resumes_from_the_last_checkpoint(
    pipeline_store, tiny_settings, monkeypatch, tmp_path: Path
):
    real_checkpoint = training._Run.checkpoint

    def killed_after_first_checkpoint(self, path):
        real_checkpoint(self, path)
        raise RuntimeError("worker killed (execution API token expired)")

    monkeypatch.setattr(training._Run, "checkpoint", killed_after_first_checkpoint)
    with pytest.raises(RuntimeError, match="worker killed"):
        train_candidate(tiny_settings, AIRFLOW, seed=0)
    monkeypatch.setattr(training._Run, "checkpoint", real_checkpoint)

    retried = train_candidate(tiny_settings, AIRFLOW, seed=0)
    assert retried["start_step"] == 400  # the checkpoint at the first episode end after 400
    client = MlflowClient()
    run = client.get_run(retried["mlflow_run_id"])
    assert run.data.tags[tags.TRAINED] == "true"
    assert run.data.tags["airflow.run_key"] == AIRFLOW.key
    assert run.data.tags[tags.CANDIDATE_KEY] == AIRFLOW.candidate_key(0)
    returns = client.get_metric_history(run.info.run_id, "episode_return")
    assert [m.step for m in returns] == [200, 400, 600, 800, 1000]  # each episode logged once
    experiment = client.get_experiment_by_name("rlops-test")
    assert len(client.search_runs([experiment.experiment_id])) == 1  # the retry reused it

    # A retry after training finished does not train again.
    assert train_candidate(tiny_settings, AIRFLOW, seed=0)["start_step"] == 1_000

    # The killed-and-resumed training ends exactly where one uninterrupted attempt ends:
    # weights, optimizer moments, replay rows, RNG states, episode history.
    straight = train_candidate(tiny_settings, UNINTERRUPTED, seed=0)
    assert straight["start_step"] == 0
    _assert_same_state(
        _final_state(retried["mlflow_run_id"], tmp_path / "resumed"),
        _final_state(straight["mlflow_run_id"], tmp_path / "straight"),
    )
