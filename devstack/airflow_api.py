"""A devstack's Airflow REST API, called as the UI calls it: one client for tests and benchmarks.

Every call that must succeed raises StackError naming the call and the answer (not a pytest
assert), so scripts outside pytest can use it too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from devstack.processes import StackError
from devstack.stack import Stack

RUN_TIMEOUT = 480.0  # a tiny pipeline run takes about 30 s on an idle 2-core box; much more loaded
POLL_SECONDS = 2.0
FINISHED = ("success", "failed")


class AirflowApi:
    """One DAG on a stack's Airflow, logged in (the admin by default) with a `/auth/token` token."""

    def __init__(
        self,
        stack: Stack,
        dag_id: str = "rlops_sac_pipeline",
        *,
        dag_file: str | None = None,
        user: str | None = None,
    ) -> None:
        """Logged in as the stack's admin, or as `user` (one of its `airflow_passwords`)."""
        self.dag_id = dag_id
        # Import errors name the file relative to the dags-folder bundle; ours are named as the DAG.
        self.dag_file = dag_file or f"{dag_id}.py"
        self.dag_path = f"/api/v2/dags/{dag_id}"
        # trust_env=False: a proxy from the environment must not see loopback calls.
        self.http = httpx.Client(base_url=stack.airflow_url, trust_env=False, timeout=30)
        login = {"username": stack.airflow_username, "password": stack.airflow_password}
        if user is not None:
            login = {"username": user, "password": stack.airflow_passwords[user]}
        try:
            token = self._call("POST", "/auth/token", json=login).json()["access_token"]
        except BaseException:
            self.http.close()
            raise
        self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """The answer of a call that must succeed (or answer with a status in `allow`)."""
        response = self.http.request(method, path, **kwargs)
        if not response.is_success and response.status_code not in allow:
            raise StackError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def get(self, path: str, **params: Any) -> Any:
        """The JSON of a GET that must succeed."""
        return self._call("GET", path, params=params).json()

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON of a PATCH that must succeed."""
        return self._call("PATCH", path, json=body).json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON of a POST that must succeed."""
        return self._call("POST", path, json=body).json()

    def run_path(self, run_id: str) -> str:
        """REST path of one DAG run (run ids hold ':' and '+')."""
        return f"{self.dag_path}/dagRuns/{quote(run_id, safe='')}"

    def wait_for_dag(self, timeout: float = 120.0) -> dict[str, Any]:
        """The DAG as soon as the dag-processor has parsed it; its import error if it cannot."""
        deadline = time.monotonic() + timeout
        while (response := self._call("GET", self.dag_path, allow=(404,))).status_code == 404:
            errors = self.get("/api/v2/importErrors")["import_errors"]
            ours = [error["stack_trace"] for error in errors if error["filename"] == self.dag_file]
            if ours:
                raise StackError(f"{self.dag_file} does not import:\n" + "\n".join(ours))
            if time.monotonic() > deadline:
                raise StackError(f"{self.dag_id} not parsed after {timeout:.0f} s")
            time.sleep(1)
        return response.json()

    def open_for_manual_runs(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for the parsed DAG (its JSON), unpause it, and fail the missed tick that starts.

        Unpausing a cron DAG with catchup=False makes the scheduler start its latest missed tick
        at once (field notes H), with the default params (the pipeline's: 20k steps). With
        max_active_runs=1 it would hold every manual run back for minutes, so it is marked failed
        as soon as it appears. A DAG without a schedule, or with no tick due, is just unpaused.
        """
        dag = self.wait_for_dag(timeout)
        self.patch(self.dag_path, {"is_paused": False})
        due = dag["next_dagrun_run_after"]
        if due is None or datetime.fromisoformat(due) > datetime.now(UTC):
            return dag
        deadline = time.monotonic() + 60
        while not (ticks := self.get(f"{self.dag_path}/dagRuns", run_type="scheduled")["dag_runs"]):
            if time.monotonic() > deadline:
                raise StackError(f"{self.dag_id}: the missed scheduled tick never started")
            time.sleep(0.5)
        for tick in ticks:
            self.patch(self.run_path(tick["dag_run_id"]), {"state": "failed"})
        return dag

    def trigger(self, conf: dict[str, Any]) -> httpx.Response:
        """POST a manual run as the UI does, answer unchecked (a bad param gets 400).

        No logical date means "now"; leaving the field out gets 422 (field notes B6).
        """
        return self.http.post(f"{self.dag_path}/dagRuns", json={"logical_date": None, "conf": conf})

    def start_run(self, conf: dict[str, Any]) -> str:
        """The run id of a manual run that must be accepted."""
        response = self.trigger(conf)
        if response.status_code != 200:
            raise StackError(f"trigger {self.dag_id}: {response.status_code} {response.text}")
        return response.json()["dag_run_id"]

    def run_to_end(
        self,
        conf: dict[str, Any],
        timeout: float = RUN_TIMEOUT,
        progress: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """Trigger a run and wait for it: the run's final JSON."""
        return self.wait_for_run(self.start_run(conf), timeout, progress)

    def wait_for_run(
        self,
        run_id: str,
        timeout: float = RUN_TIMEOUT,
        progress: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """Poll a run until it succeeds or fails (`progress` sees the run's JSON at every poll).

        On time-out, StackError names the unfinished task instances: the one stuck shows.
        """
        deadline = time.monotonic() + timeout
        while (run := self.get(self.run_path(run_id)))["state"] not in FINISHED:
            if progress is not None:
                progress(run)
            if time.monotonic() > deadline:
                unfinished = self.unfinished_tasks(run_id)
                raise StackError(f"{run_id} {run['state']} after {timeout:.0f} s: {unfinished}")
            time.sleep(POLL_SECONDS)
        return run

    def unfinished_tasks(self, run_id: str) -> str:
        """`task[map_index] state, ...` for every task instance of a run that has not succeeded."""
        return ", ".join(
            f"{task_id}[{map_index}] {state}"
            for (task_id, map_index), state in self.tasks(run_id).items()
            if state != "success"
        )

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run, as the REST API describes it."""
        return self.get(f"{self.run_path(run_id)}/taskInstances")["task_instances"]

    def task_tries(self, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
        """Every try of one task instance, first try first (earlier ones from its history)."""
        path = f"{self.run_path(run_id)}/taskInstances/{task_id}/{map_index}/tries"
        return sorted(self.get(path)["task_instances"], key=lambda ti: ti["try_number"])

    def tasks(self, run_id: str) -> dict[tuple[str, int], str]:
        """State of every task instance of a run, by (task_id, map_index)."""
        instances = self.task_instances(run_id)
        return {(ti["task_id"], ti["map_index"]): ti["state"] for ti in instances}

    def task_log(self, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """The text of one try's task log, as the UI shows it (one JSON event a line)."""
        path = f"{self.run_path(run_id)}/taskInstances/{task_id}/logs/{try_number}"
        response = self._call(
            "GET", path, params={"map_index": map_index}, headers={"Accept": "application/json"}
        )
        return "\n".join(json.dumps(line) for line in response.json()["content"])

    def clear_task_instances(
        self, run_id: str, task_id: str, map_indexes: list[int]
    ) -> list[dict[str, Any]]:
        """Clear these map indexes of one task, as the UI's Clear does: the cleared instances.

        The scheduler runs them again with a new try. Only these (not the failed ones only, no
        upstream or downstream), and reset_dag_runs puts a finished run back to queued, then
        running; the server's defaults would be a dry run of failed instances only.
        """
        body = {
            "dag_run_id": run_id,
            "task_ids": [[task_id, map_index] for map_index in map_indexes],
            "only_failed": False,
            "include_upstream": False,
            "include_downstream": False,
            "dry_run": False,
            "reset_dag_runs": True,
        }
        return self.post(f"{self.dag_path}/clearTaskInstances", body)["task_instances"]
