"""The CeleryExecutor stack: Redis and two Celery workers that share no disk, on real processes.

The worker environments are checked as devstack generated them (Airflow processes rewrite their
own /proc environ and cmdline with setproctitle, so the running processes cannot tell), and
devstack is shown to refuse a worker that would break them: secrets other than the API server's
(a task token signed with another JWT secret is refused, as shown), or a Celery hostname that
is taken. The sweep then shows those environments work: tasks land on both workers and their
logs are read. (test_celery_tuning.py runs next, then test_celery_worker_loss.py, which leaves
one worker dead: test files run in name order.)
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from airflow.api_fastapi.auth.tokens import JWTGenerator

from devstack import Stack
from devstack.celery import (
    SHARED_WITH_API_SERVER,
    TASK_HEARTBEAT_TIMEOUT,
    VISIBILITY_TIMEOUT,
    WORKER_CELERY_CONFIG,
    Worker,
    answering_workers,
    worker_address,
    worker_settings,
)
from devstack.processes import StackError, stop_groups
from tests.integration.conftest import TINY_CONF, AirflowApi, poll

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


def test_each_worker_takes_a_task_only_while_it_is_free(celery_stack: Stack) -> None:
    """Every live worker runs with the stack's Celery settings, prefetch disabled among them:
    no task waits reserved behind a busy worker while another one is idle."""
    settings = worker_settings(celery_stack.redis.url)
    assert set(settings) == {worker.celery_hostname for worker in celery_stack.celery_workers}
    for node, running in settings.items():
        assert {key: running.get(key) for key in WORKER_CELERY_CONFIG} == WORKER_CELERY_CONFIG, node


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


@pytest.fixture
def elsewhere(celery_stack: Stack, tmp_path: Path) -> Iterator[Stack]:
    """The Celery stack with its workers' disks moved to tmp_path: starting them again there
    clashes with nothing on disk, only with what devstack checks. Stops what it fails to refuse.
    """
    moved = celery_stack.model_copy(update={"state_dir": tmp_path, "processes": {}})
    moved._popen = dict(celery_stack._popen)  # its own record of what it spawns
    try:
        yield moved
    finally:
        stop_groups(moved.processes.values())


@pytest.mark.parametrize("unset", [False, True], ids=["another value", "unset"])
@pytest.mark.parametrize("key", SHARED_WITH_API_SERVER)
def test_a_worker_not_sharing_the_api_servers_settings_is_refused(
    elsewhere: Stack, monkeypatch: pytest.MonkeyPatch, key: str, unset: bool
) -> None:
    wrong = secrets.token_urlsafe(64)  # a value no process of the stack has
    given = Worker.env

    def altered_env(worker: Worker, task_env: dict[str, str]) -> dict[str, str]:
        env = given(worker, task_env) | {key: wrong}
        if unset:
            del env[key]
        return env

    monkeypatch.setattr(Worker, "env", altered_env)

    with pytest.raises(StackError, match=key) as refused:
        elsewhere._start_workers()

    assert elsewhere.processes == {}
    right = elsewhere.airflow_env()
    message = str(refused.value)  # names, never values
    assert not any(value in message for value in (wrong, *map(right.get, SHARED_WITH_API_SERVER)))


def test_a_task_token_signed_with_another_jwt_secret_is_refused_by_the_execution_api(
    celery_stack: Stack,
) -> None:
    """Why the check above matters: given one token signed with the stack's JWT secret and one
    signed with another (same claims), its execution API lets only the first through."""
    log = celery_stack.log("airflow-apiserver")
    logged = log.stat().st_size

    def keys_with(secret: str) -> httpx.Response:
        token = JWTGenerator(
            secret_key=secret, valid_for=60, audience="urn:airflow.apache.org:task", issuer=None
        ).generate({"sub": str(uuid.uuid4())})
        return httpx.get(
            f"{celery_stack.airflow_url}/execution/variables/keys",
            headers={"Authorization": f"Bearer {token}"},
            trust_env=False,
            timeout=10,
        )

    accepted = keys_with(celery_stack.airflow_jwt_secret)
    refused = keys_with(secrets.token_urlsafe(64))

    assert accepted.status_code == 200, accepted.text
    assert (refused.status_code, refused.json()) == (403, {"detail": "Invalid auth token"})

    def new_log() -> str | None:
        text = log.read_bytes()[logged:].decode(errors="replace")
        return text if "Signature verification failed" in text else None

    poll(new_log, "'Signature verification failed' in the API server log", timeout=10)


def test_a_worker_is_refused_a_celery_hostname_a_live_worker_answers_to(
    celery_stack: Stack, elsewhere: Stack
) -> None:
    live = {worker.celery_hostname for worker in celery_stack.celery_workers}

    with pytest.raises(StackError, match="already answers") as refused:
        elsewhere._start_workers()  # the same workers again, as if on other machines

    assert all(name in str(refused.value) for name in live)
    assert elsewhere.processes == {}
    assert answering_workers(celery_stack.redis.url) == live  # both still there, and alone


def test_workers_given_one_celery_hostname_are_refused(
    elsewhere: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Worker, "celery_hostname", property(lambda worker: "twin@devstack"))

    with pytest.raises(StackError, match="more than one worker: twin@devstack"):
        elsewhere._start_workers()

    assert elsewhere.processes == {}


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
