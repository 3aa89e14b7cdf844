"""A Celery worker killed in the middle of a training: the scheduler retries the task on the
live worker, which resumes from the last checkpoint in the artifact store; the candidate stays
one MLflow run with one model version.

The last test on the Celery stack (test files run in name order): the killed worker stays dead.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from devstack import Stack
from devstack.celery import TASK_HEARTBEAT_TIMEOUT, answering_workers
from rlops_airflow.mlflow_run import AirflowRun
from tests.integration.conftest import (
    DAG_ID,
    AirflowApi,
    candidate_runs,
    checkpointed_run,
    poll,
)
from tests.integration.test_celery_stack import SWEEP

pytestmark = pytest.mark.integration

# One candidate trained long enough to be killed after its first checkpoint (at the first
# episode end past step 500) and well before its end; its own model name, for counting versions.
KILLED_SEED = 7
MID_TRAINING_KILL = {
    **SWEEP,
    "n_seeds": 1,
    "seed": KILLED_SEED,
    "total_timesteps": 4000,
    "checkpoint_every": 500,
    "registered_model_name": "rlops-celery-killed",
}


def _train_instance(api: AirflowApi, run_id: str) -> dict[str, Any]:
    """The run's one `train` task instance (one seed), in its current try."""
    (trained,) = [ti for ti in api.task_instances(run_id) if ti["task_id"] == "train"]
    return trained


def test_a_training_whose_worker_is_killed_resumes_on_the_other_from_its_checkpoint(
    celery_stack: Stack, celery_pipeline_api: AirflowApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in celery_stack.mlflow_client_env().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient()
    api = celery_pipeline_api
    total = MID_TRAINING_KILL["total_timesteps"]
    model = MID_TRAINING_KILL["registered_model_name"]
    began = time.monotonic()
    response = api.trigger(MID_TRAINING_KILL)
    assert response.status_code == 200, response.text
    run_id = response.json()["dag_run_id"]
    key = AirflowRun(DAG_ID, run_id).candidate_key(KILLED_SEED)

    # Given a training with a checkpoint in the artifact store, and still running on its worker,
    mlflow_run = poll(lambda: checkpointed_run(client, key), "checkpoint in the artifact store")
    first = _train_instance(api, run_id)
    assert (first["state"], first["try_number"]) == ("running", 1), "done before the kill"
    (killed,) = [w for w in celery_stack.celery_workers if w.address == first["hostname"]]
    (live,) = [w for w in celery_stack.celery_workers if w != killed]

    # when that worker dies with the task's own processes (the worker stays dead),
    celery_stack.processes[killed.name].kill()
    killed_at = time.monotonic()
    run = api.wait_for_run(run_id)
    done_at = time.monotonic()

    # then the scheduler's one retry ran on the live worker and resumed from the checkpoint,
    assert run["state"] == "success", api.tasks(run_id)
    tries = api.task_tries(run_id, "train", map_index=0)
    assert [(ti["try_number"], ti["hostname"]) for ti in tries] == [
        (1, killed.address),
        (2, live.address),
    ]
    log = api.task_log(run_id, "train", try_number=2, map_index=0)
    resumed = re.search(r"resumed from (\S+) at step (\d+)", log)
    assert resumed, log[-3000:]
    source, step = Path(resumed[1]), int(resumed[2])
    assert source.is_relative_to(live.tmp)  # fetched from the store, not the dead worker's disk
    assert MID_TRAINING_KILL["checkpoint_every"] <= step < total
    assert f"trained steps {step}..{total}" in log
    print(
        f"train killed, resumed at step {step} on the other worker: run done "
        f"{done_at - killed_at:.1f} s after the kill, {done_at - began:.1f} s in all "
        f"(heartbeat timeout {TASK_HEARTBEAT_TIMEOUT} s, retry delay 30 s)"
    )

    # and the candidate is one MLflow run, one model version, champion and challenger once.
    assert candidate_runs(client, key) == [mlflow_run]
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id == mlflow_run
    aliases = client.get_registered_model(model).aliases
    assert aliases == {"challenger": version.version, "champion": version.version}
    assert answering_workers(celery_stack.redis.url) == {live.celery_hostname}  # still dead
