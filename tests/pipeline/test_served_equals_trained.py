"""What is served is what was trained: the registry's TorchScript file acts like the checkpoint."""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from rl_core.checkpoint import load_agent
from rl_core.export import load_exported, random_observations
from rl_core.training import CHECKPOINT_ARTIFACT_DIR
from rlops_airflow.mlflow_run import AirflowRun, download
from rlops_airflow.tasks import (
    CHECKPOINT_FILE,
    evaluate_candidate,
    export_candidate,
    promote_candidate,
    register_candidate,
    train_candidate,
)


def test_champion_file_from_registry_matches_training_time_actor(
    pipeline_store, tiny_settings, tmp_path: Path
) -> None:
    settings = tiny_settings.model_copy(update={"min_reward": -100_000, "min_speedup": 0})
    airflow = AirflowRun("rlops_sac_pipeline", "manual__served")
    trained = train_candidate(settings, airflow, seed=0)
    candidate = {**trained, **evaluate_candidate(settings, trained["mlflow_run_id"])}
    export_candidate(candidate["mlflow_run_id"])
    registered = register_candidate(settings, airflow, candidate, {"speedup": 2.0})
    assert promote_candidate(settings, candidate["mlflow_run_id"], registered)["outcome"] == (
        "promoted"
    )

    served_dir = mlflow.artifacts.download_artifacts(
        f"models:/{settings.registered_model_name}@champion", dst_path=str(tmp_path / "served")
    )
    served = load_exported(Path(served_dir) / "actor.pt")
    checkpoint = download(
        candidate["mlflow_run_id"], f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", tmp_path
    )
    trained_actor = load_agent(checkpoint)[0].actor

    observations = random_observations(settings.env_id, 256, seed=123)
    with torch.inference_mode():
        difference = served(observations) - trained_actor.deterministic_action(observations)
    assert float(difference.abs().max()) <= 1e-5
