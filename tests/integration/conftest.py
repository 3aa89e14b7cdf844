"""One real stack per test session (devstack: Postgres, S3, MLflow server, Airflow services)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from devstack import Stack
from devstack.airflow_api import RUN_TIMEOUT, AirflowApi
from devstack.scratch import temporary_stack

# What the test files import from here.
__all__ = [
    "DAG_FILE",
    "DAG_ID",
    "DAG_PATH",
    "RUN_TIMEOUT",
    "TINY_CONF",
    "AirflowApi",
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
