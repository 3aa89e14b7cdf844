"""One real stack per test session (devstack: Postgres, S3, MLflow server, Airflow services)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from mlflow import MlflowClient

from devstack import Stack
from devstack.airflow_api import RUN_TIMEOUT, AirflowApi
from devstack.scratch import temporary_stack
from rl_core.common.artifact_names import CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE
from rlops_registry import tags

# What the test files import from here.
__all__ = [
    "CHECKPOINT",
    "DAG_FILE",
    "DAG_ID",
    "DAG_PATH",
    "RUN_TIMEOUT",
    "TINY_CONF",
    "AirflowApi",
    "candidate_runs",
    "checkpointed_run",
    "pipeline_api_of",
    "poll",
]


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Started once (about 20 s on 2 cores) and stopped, by process group, after the session."""
    with temporary_stack("rlops-stack-") as running:
        yield running


@pytest.fixture(scope="session")
def celery_stack() -> Iterator[Stack]:
    """The same stack on the CeleryExecutor: Redis and two workers that share no disk (~30 s)."""
    with temporary_stack("rlops-celery-", executor="CeleryExecutor", workers=2) as running:
        yield running


# -- the pipeline DAG on that stack, through Airflow's REST API (as the UI calls it) -----------

DAG_ID = "rlops_sac_pipeline"
DAG_FILE = "rlops_sac_pipeline.py"  # relative to the dags-folder bundle, as import errors say
DAG_PATH = f"/api/v2/dags/{DAG_ID}"
# Every task for real, in about half a minute; the gate lets it through. Add a model name.
TINY_CONF = {
    "total_timesteps": 1000,
    "checkpoint_every": 400,
    "eval_episodes": 3,
    "sac_overrides": {"hidden_sizes": [64, 64], "batch_size": 64},
    "min_reward": -100_000,
    "min_speedup": 0,
}


def pipeline_api_of(stack: Stack) -> Iterator[AirflowApi]:
    """The REST API with the pipeline DAG parsed and unpaused, free to start a manual run at once.

    Its missed nightly tick is failed as soon as it starts: see AirflowApi.open_for_manual_runs.
    """
    with AirflowApi(stack, DAG_ID, dag_file=DAG_FILE) as api:
        api.open_for_manual_runs()
        yield api


@pytest.fixture(scope="session")
def pipeline_api(stack: Stack) -> Iterator[AirflowApi]:
    """The pipeline on the LocalExecutor stack, ready for manual runs (see pipeline_api_of)."""
    yield from pipeline_api_of(stack)


@pytest.fixture(scope="session")
def celery_pipeline_api(celery_stack: Stack) -> Iterator[AirflowApi]:
    """The pipeline on the Celery stack, ready for manual runs (see pipeline_api_of)."""
    yield from pipeline_api_of(celery_stack)


T = TypeVar("T")


def poll(find: Callable[[], T | None], what: str, timeout: float = 300.0) -> T:
    """The first answer of find() that is not None, asked twice a second."""
    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.5)
    return found


# -- a candidate's MLflow run, found by its tag while its pipeline runs ----------------------

CHECKPOINT = f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}"


def candidate_runs(client: MlflowClient, key: str) -> list[str]:
    """Ids of every MLflow run, in any experiment, tagged as the candidate `key`."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`{tags.CANDIDATE_KEY}` = '{key}'")
    return [run.info.run_id for run in found]


def checkpointed_run(client: MlflowClient, key: str) -> str | None:
    """The candidate's MLflow run once a checkpoint of it is in the artifact store."""
    for run_id in candidate_runs(client, key):
        if CHECKPOINT in {f.path for f in client.list_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR)}:
            return run_id
    return None
