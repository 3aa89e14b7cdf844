"""One real stack per test session (devstack: Postgres, S3, MLflow server, Airflow services)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devstack import Stack


def _started(prefix: str, **options: Any) -> Iterator[Stack]:
    """A stack in a fresh state dir, stopped by process group and deleted afterwards."""
    # Not under pytest's basetemp: that is private (0700) and, when we are root, Postgres runs as
    # the `postgres` OS user, who must be able to reach its data directory.
    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    state_dir.chmod(0o755)
    try:
        running = Stack.start(state_dir, **options)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Started once (about 20 s on 2 cores) and stopped, by process group, after the session."""
    yield from _started("rlops-stack-")


@pytest.fixture(scope="session")
def celery_stack() -> Iterator[Stack]:
    """The same stack on the CeleryExecutor: Redis and two workers that share no disk (~30 s)."""
    yield from _started("rlops-celery-", executor="CeleryExecutor", workers=2)


# -- the pipeline DAG on that stack, through Airflow's REST API (as the UI calls it) -----------

DAG_ID = "rlops_sac_pipeline"
DAG_FILE = "rlops_sac_pipeline.py"  # relative to the dags-folder bundle, as import errors say
DAG_PATH = f"/api/v2/dags/{DAG_ID}"
RUN_TIMEOUT = 480.0  # a tiny run takes about 30 s on an idle 2-core box; much more under load
# Every task for real, in about half a minute; the gate lets it through. Add a model name.
TINY_CONF = {
    "total_timesteps": 1000,
    "checkpoint_every": 400,
    "eval_episodes": 3,
    "sac_overrides": {"hidden_sizes": [64, 64], "batch_size": 64},
    "min_reward": -100_000,
    "min_speedup": 0,
}


def _run_path(run_id: str) -> str:
    """REST path of one DAG run (run ids hold ':' and '+')."""
    return f"{DAG_PATH}/dagRuns/{quote(run_id, safe='')}"


class AirflowApi:
    """The stack's Airflow REST API, logged in as its admin with a token from `/auth/token`."""

    def __init__(self, stack: Stack) -> None:
        self.http = httpx.Client(base_url=stack.airflow_url, trust_env=False, timeout=30)
        login = {"username": stack.airflow_username, "password": stack.airflow_password}
        token = self.http.post("/auth/token", json=login)
        assert token.status_code == 201, token.text
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"

    def get(self, path: str, **params: str) -> Any:
        """The JSON of a GET that must succeed."""
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def patch(self, path: str, body: dict[str, Any]) -> None:
        """A PATCH that must succeed."""
        response = self.http.patch(path, json=body)
        assert response.status_code == 200, f"PATCH {path}: {response.status_code} {response.text}"

    def trigger(self, conf: dict[str, Any]) -> httpx.Response:
        """POST a manual run as the UI does; no logical date means "now"."""
        return self.http.post(f"{DAG_PATH}/dagRuns", json={"logical_date": None, "conf": conf})

    def run_to_end(self, conf: dict[str, Any]) -> dict[str, Any]:
        """Trigger a run and wait for it: the run's final JSON."""
        response = self.trigger(conf)
        assert response.status_code == 200, response.text
        return self.wait_for_run(response.json()["dag_run_id"])

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """Poll a run until it succeeds or fails; on time-out, fail with its task states."""
        deadline = time.monotonic() + timeout
        while (run := self.get(_run_path(run_id)))["state"] not in ("success", "failed"):
            if time.monotonic() > deadline:
                pytest.fail(f"{run_id} {run['state']} after {timeout:.0f} s: {self.tasks(run_id)}")
            time.sleep(2)
        return run

    def task_log(self, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The text of one try's task log, as the UI shows it."""
        path = f"{_run_path(run_id)}/taskInstances/{task_id}/logs/{try_number}"
        response = self.http.get(
            path, params={"map_index": map_index}, headers={"Accept": "application/json"}
        )
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return "\n".join(json.dumps(line) for line in response.json()["content"])

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, as the REST API describes it."""
        return self.get(f"{_run_path(run_id)}/taskInstances")["task_instances"]

    def task_tries(self, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance, first try first (earlier ones from its history)."""
        path = f"{_run_path(run_id)}/taskInstances/{task_id}/{map_index}/tries"
        return sorted(self.get(path)["task_instances"], key=lambda ti: ti["try_number"])

    def tasks(self, run_id: str) -> dict[tuple[str, int], str]:
        """State of every task instance of a run, by (task_id, map_index)."""
        instances = self.task_instances(run_id)
        return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in instances}


def _wait_for_dag(api: AirflowApi, timeout: float = 120.0) -> dict[str, Any]:
    """The DAG as soon as the dag-processor has parsed it; its import error if it cannot."""
    deadline = time.monotonic() + timeout
    while (response := api.http.get(DAG_PATH)).status_code == 404:
        errors = api.get("/api/v2/importErrors")["import_errors"]
        ours = [error["stack_trace"] for error in errors if error["filename"] == DAG_FILE]
        assert not ours, "\n".join(ours)
        assert time.monotonic() < deadline, f"{DAG_ID} not parsed after {timeout:.0f} s"
        time.sleep(1)
    assert response.status_code == 200, response.text
    return response.json()


def _pipeline_api(stack: Stack) -> Iterator[AirflowApi]:
    """The REST API with the pipeline DAG parsed and unpaused, free to start a manual run at once.

    Unpausing a cron DAG with catchup=False makes the scheduler start its latest missed nightly
    tick (field notes H), with the default params (20k steps). With max_active_runs=1 it would
    hold every manual run back for minutes, so it is marked failed as soon as it appears.
    """
    api = AirflowApi(stack)
    try:
        due = _wait_for_dag(api)["next_dagrun_run_after"]
        api.patch(DAG_PATH, {"is_paused": False})
        if due is not None and datetime.fromisoformat(due) <= datetime.now(UTC):
            deadline = time.monotonic() + 60
            while not (ticks := api.get(f"{DAG_PATH}/dagRuns", run_type="scheduled")["dag_runs"]):
                assert time.monotonic() < deadline, "the missed nightly tick never started"
                time.sleep(0.5)
            for tick in ticks:
                api.patch(_run_path(tick["dag_run_id"]), {"state": "failed"})
        yield api
    finally:
        api.http.close()


@pytest.fixture(scope="session")
def pipeline_api(stack: Stack) -> Iterator[AirflowApi]:
    """The pipeline on the LocalExecutor stack, ready for manual runs (see _pipeline_api)."""
    yield from _pipeline_api(stack)


@pytest.fixture(scope="session")
def celery_pipeline_api(celery_stack: Stack) -> Iterator[AirflowApi]:
    """The pipeline on the Celery stack, ready for manual runs (see _pipeline_api)."""
    yield from _pipeline_api(celery_stack)
