"""The CeleryExecutor stack: Redis and two Celery workers that share no disk, on real processes.

The worker environments are checked as devstack generated them (Airflow processes rewrite their
own /proc environ and cmdline with setproctitle, so the running processes cannot tell); the
sweep then shows those environments work: tasks land on both workers and their logs are read.
Last, one worker is killed in the middle of a training: the tests run in file order, and every
test before that one needs both workers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from mlflow import MlflowClient

from devstack import Stack
from devstack.celery import (
    TASK_HEARTBEAT_TIMEOUT,
    VISIBILITY_TIMEOUT,
    answering_workers,
    worker_address,
)
from rl_core.training import CHECKPOINT_ARTIFACT_DIR
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.tasks import CHECKPOINT_FILE
from rlops_registry import tags
from tests.integration.conftest import DAG_ID, TINY_CONF, AirflowApi

pytestmark = pytest.mark.integration

# A 4-seed sweep as cheap as the pipeline allows: the fewest steps, one eval episode, no GIF,
# one torch thread per task (two workers share two cores).
SWEEP = {
    **TINY_CONF,
    "n_seeds": 4,
    "checkpoint_every": 0,
    "eval_episodes": 1,
    "record_video": False,
    "sac_overrides": {"hidden_sizes": [32, 32], "batch_size": 32, "torch_threads": 1},
    "registered_model_name": "rlops-celery",
}
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
CHECKPOINT = f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}"
# Shared by every Airflow process: tokens, connections and served logs are signed with these.
SECRETS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY")
CELERY = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    # The workers' task supervisors pace their heartbeats by the scheduler's timeout.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL",
)


def test_each_worker_has_a_disk_and_names_of_its_own(celery_stack: Stack) -> None:
    workers = celery_stack.worker_envs()
    scheduler = celery_stack.task_env()
    assert len(workers) == 2

    for key in ("AIRFLOW_HOME", "TMPDIR", "AIRFLOW__CORE__DAGS_FOLDER"):
        folders = [Path(env[key]) for env in workers.values()]
        assert Path(scheduler.get(key, "/nowhere")) not in folders, key
        for a in folders:  # none is another's, nor inside another's
            assert all(a == b or not a.is_relative_to(b) for b in folders), key
        assert len(set(folders)) == len(folders), key
        assert all(folder.is_dir() for folder in folders), key
    for env in workers.values():
        dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
        assert (dags / "rlops_sac_pipeline.py").is_file()  # its own copy, not the repo's folder

    # Unique names: Celery's node name (a duplicate is refused) and Airflow's task hostname.
    assert answering_workers(celery_stack.redis.url) == {
        worker.celery_hostname for worker in celery_stack.celery_workers
    }
    hostnames = {env["RLOPS_WORKER_ADDRESS"] for env in workers.values()}
    assert len(hostnames) == 2 and "127.0.0.1" not in hostnames
    callable_path = f"{worker_address.__module__}.{worker_address.__name__}"
    assert {env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] for env in workers.values()} == {callable_path}


def test_workers_share_the_secrets_and_execution_api_of_the_other_services(
    celery_stack: Stack,
) -> None:
    scheduler = celery_stack.task_env()
    url = scheduler["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]

    # The devstack API server, never the http://localhost:8080/execution/ default.
    assert url == f"{celery_stack.airflow_url}/execution/"
    assert urlsplit(url).port == celery_stack.airflow_port != 8080
    others = {"airflow-apiserver": celery_stack.airflow_env(), **celery_stack.worker_envs()}
    for name, env in others.items():
        for key in (*SECRETS, *CELERY):
            assert env[key] == scheduler[key], (name, key)
    assert scheduler["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    timeout = int(scheduler["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"])
    assert timeout == VISIBILITY_TIMEOUT >= 6 * 3600  # above the longest training: no redelivery
    heartbeat_timeout = int(scheduler["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"])
    assert heartbeat_timeout == TASK_HEARTBEAT_TIMEOUT < 300  # a dead worker's task: retried soon
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which the venv does not have.
    assert scheduler["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")


def test_a_seed_sweep_spreads_over_the_workers_and_each_log_is_readable(
    celery_stack: Stack, celery_pipeline_api: AirflowApi
) -> None:
    began = time.monotonic()
    run = celery_pipeline_api.run_to_end(SWEEP)
    run_id = run["dag_run_id"]
    print(f"4-seed sweep on 2 Celery workers: {time.monotonic() - began:.1f} s")

    assert run["state"] == "success", celery_pipeline_api.tasks(run_id)
    trained = [ti for ti in celery_pipeline_api.task_instances(run_id) if ti["task_id"] == "train"]
    assert sorted(ti["map_index"] for ti in trained) == [0, 1, 2, 3]
    addresses = {worker.address for worker in celery_stack.celery_workers}
    hosts = {ti["hostname"] for ti in trained}
    assert hosts == addresses  # both workers trained
    # Two trainings on two busy cores: no healthy task missed its heartbeats long enough to be
    # taken for dead (the stack's heartbeat timeout is short, for the test below).
    assert [ti["try_number"] for ti in trained] == [1, 1, 1, 1]

    port = celery_stack.worker_log_port
    for host in hosts:  # one log per worker, fetched by the API server from its log server
        ti = next(ti for ti in trained if ti["hostname"] == host)
        log = celery_pipeline_api.task_log(run_id, "train", map_index=ti["map_index"])
        assert "Could not read served logs" not in log
        assert f"http://{host}:{port}/log/" in log  # the source: that worker's log server
        assert "trained steps 0..1000" in log, log[-2000:]


T = TypeVar("T")


def _poll(find: Callable[[], T | None], what: str, timeout: float = 300.0) -> T:
    """The first answer of find() that is not None, asked twice a second."""
    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.5)
    return found


def _candidate_runs(client: MlflowClient, key: str) -> list[str]:
    """Ids of every MLflow run, in any experiment, tagged as the candidate `key`."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    found = client.search_runs(experiments, filter_string=f"tags.`{tags.CANDIDATE_KEY}` = '{key}'")
    return [run.info.run_id for run in found]


def _checkpointed_run(client: MlflowClient, key: str) -> str | None:
    """The candidate's MLflow run once a checkpoint of it is in the artifact store."""
    for run_id in _candidate_runs(client, key):
        if CHECKPOINT in {f.path for f in client.list_artifacts(run_id, CHECKPOINT_ARTIFACT_DIR)}:
            return run_id
    return None


def _train_instance(api: AirflowApi, run_id: str) -> dict[str, Any]:
    """The run's one `train` task instance (one seed), in its current try."""
    (trained,) = [ti for ti in api.task_instances(run_id) if ti["task_id"] == "train"]
    return trained


def test_a_training_whose_worker_is_killed_resumes_on_the_other_from_its_checkpoint(
    celery_stack: Stack, celery_pipeline_api: AirflowApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", celery_stack.mlflow_uri)
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
    mlflow_run = _poll(lambda: _checkpointed_run(client, key), "checkpoint in the artifact store")
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
    assert _candidate_runs(client, key) == [mlflow_run]
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id == mlflow_run
    aliases = client.get_registered_model(model).aliases
    assert aliases == {"challenger": version.version, "champion": version.version}
    assert answering_workers(celery_stack.redis.url) == {live.celery_hostname}  # still dead
