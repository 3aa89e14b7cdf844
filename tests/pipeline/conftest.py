"""Fixtures for the pipeline's task code against a real local MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlops_airflow.settings import PipelineSettings

TINY_SAC = {"hidden_sizes": [32, 32], "batch_size": 32, "learning_starts": 50}


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
