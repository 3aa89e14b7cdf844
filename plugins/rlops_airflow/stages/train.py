"""The `train` stage: SAC trained into the candidate's MLflow run, resumable on retry.

Also the tuning DAG's trials train through `train_in_run`, so a trial resumes as a pipeline
candidate does.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from rl_core.common.artifact_names import CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE
from rl_core.common.config import SACConfig
from rl_core.common.tracking import MlflowTracker
from rl_core.run.training import EvaluationHook, train
from rlops_airflow.mlflow_run import AirflowRun, download, get_or_create_candidate_run, has_artifact
from rlops_airflow.settings import ResolvedSettings, experiment_name
from rlops_registry import tags

log = logging.getLogger(__name__)


def _checkpoint(run_id: str, scratch: Path) -> Path:
    return download(run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", scratch)


def train_candidate(settings: ResolvedSettings, airflow: AirflowRun, seed: int) -> dict[str, Any]:
    """Train candidate `seed` in its own MLflow run, resuming a retried attempt, with the
    recipe `validate_conf` resolved."""
    config = settings.sac_config(seed)
    run_id = get_or_create_candidate_run(airflow, seed, f"{config.env_id} seed {seed}")
    if settings.tuned_by:
        MlflowClient().set_tag(run_id, tags.TUNED_BY, settings.tuned_by)
    start_step = train_in_run(config, run_id)
    return {"mlflow_run_id": run_id, "seed": seed, "start_step": start_step}


def train_in_run(
    config: SACConfig, run_id: str, on_evaluation: EvaluationHook | None = None
) -> int:
    """Train `config` into MLflow run `run_id`, resuming a retried attempt; the step it
    started from (`total_timesteps` when the run already holds a finished training).

    Checkpoints are uploaded every `checkpoint_every` steps; a retry (after a crash, a
    killed worker or an expired execution-API token) continues from the last one.
    """
    client = MlflowClient()
    if client.get_run(run_id).data.tags.get(tags.TRAINED) == "true":
        log.info("MLflow run %s already holds a finished training; not training again", run_id)
        return config.total_timesteps
    with tempfile.TemporaryDirectory() as scratch:
        resume_from = None
        if has_artifact(run_id, CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE):
            resume_from = _checkpoint(run_id, Path(scratch) / "resume")
        with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
            result = train(
                config,
                tracker=tracker,
                checkpoint_path=Path(scratch) / CHECKPOINT_FILE,
                resume_from=resume_from,
                show_progress=False,
                on_evaluation=on_evaluation,
            )
    client.set_tag(run_id, tags.TRAINED, "true")
    log.info(
        "trained steps %d..%d at %.0f steps/s in MLflow run %s",
        result.start_step,
        result.steps,
        result.steps_per_second,
        run_id,
    )
    return result.start_step
