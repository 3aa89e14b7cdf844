"""Fixtures for the pipeline's task code against a real local MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlops_airflow.settings import PipelineSettings

TINY_SAC = {"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 50}
QUICK_RUN = {
    "total_timesteps": 1000,
    "checkpoint_every": 500,
    "eval_episodes": 3,
    "min_reward": -100_000,
    "min_speedup": 0,
    "sac_overrides": {"hidden_sizes": [64, 64], "batch_size": 64, "learning_starts": 200},
}
"""A DAG conf that runs every task for real in well under a minute, through an open gate."""


@pytest.fixture
def pipeline_store(mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow on SQLite with the pipeline's experiment stored under tmp_path/artifacts."""
    monkeypatch.setenv("RLOPS_MLFLOW_ARTIFACT_LOCATION", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RLOPS_MLFLOW_EXPERIMENT", "rlops-test")
    return mlflow_store


@pytest.fixture
def tiny_settings() -> PipelineSettings:
    """A real but tiny training recipe: seconds, not minutes."""
    return PipelineSettings(
        total_timesteps=1_000,
        checkpoint_every=400,
        eval_episodes=2,
        sac_overrides=TINY_SAC,
        registered_model_name="rlops-test-model",
    )
