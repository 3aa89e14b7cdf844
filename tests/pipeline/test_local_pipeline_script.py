"""The README's first command, as a newcomer runs it: `bash scripts/run-local-pipeline.sh`.

It must run the pipeline end to end on the embedded local default, print the outcome, leave
no server behind, and leave task logs the Airflow UI can show: the promote task's log (where
the README sends users for the outcome) read back through the API server's log endpoint, and
no error-level line in any task log of the successful run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port, spawn
from tests.conftest import REPO
from tests.pipeline.conftest import QUICK_RUN

SCRIPT_TIMEOUT = 900


def _newcomer_env(local_dir: Path, port: int) -> dict[str, str]:
    """A shell with nothing of Airflow or MLflow configured; the local store under local_dir."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "MLFLOW", "RLOPS"))
    }
    return {**clean, "RLOPS_LOCAL_DIR": str(local_dir), "RLOPS_AIRFLOW_PORT": str(port)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], str]:
    """The script run once with a tiny conf: its environment and what it printed."""
    local_dir = tmp_path_factory.mktemp("local")
    env = _newcomer_env(local_dir, free_port())
    done = subprocess.run(
        ["bash", "scripts/run-local-pipeline.sh", json.dumps(QUICK_RUN)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )
    scheduler_log = local_dir / "airflow" / "last-pipeline-run.log"
    detail = scheduler_log.read_text()[-4000:] if scheduler_log.exists() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + detail
    return env, done.stdout


@pytest.fixture
def api_server(local_run: tuple[dict[str, str], str], tmp_path: Path) -> Iterator[httpx.Client]:
    """`airflow api-server` as the report tells users to start it, logged in (all admins)."""
    env, _ = local_run
    command = 'source scripts/local-env.sh && cd "$RLOPS_ROOT" && exec airflow api-server'
    server = spawn(["bash", "-c", command], env, tmp_path / "api-server.log")
    base_url = f"http://127.0.0.1:{env['RLOPS_AIRFLOW_PORT']}"
    try:
        with httpx.Client(base_url=base_url, trust_env=False, timeout=10) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    token = http.get("/auth/token")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, "API server not up after 120 s"
                    time.sleep(1)
            assert token.status_code in (200, 201), token.text
            http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            yield http
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_the_script_runs_the_pipeline_and_prints_the_outcome(
    local_run: tuple[dict[str, str], str],
) -> None:
    env, printed = local_run
    assert "model version    rlops-sac-pendulum v1 -> champion" in printed
    assert "outcome          promoted" in printed
    with pytest.raises(httpx.TransportError):  # the API server it started is gone
        httpx.get(f"http://127.0.0.1:{env['RLOPS_AIRFLOW_PORT']}/api/v2/version", timeout=2)


def test_no_task_of_the_successful_run_logs_an_error(
    local_run: tuple[dict[str, str], str],
) -> None:
    env, _ = local_run
    root = Path(env["RLOPS_LOCAL_DIR"]) / "airflow" / "logs"
    logs = {_task_of(path): path for path in root.rglob("attempt=*.log")}
    assert {"train", "evaluate", "select_candidate", "register", "promote"} <= set(logs)
    errors = [
        f"{task}: {line[:300]}"
        for task, path in logs.items()
        for line in path.read_text().splitlines()
        if json.loads(line).get("level") in ("error", "critical")
    ]
    assert not errors, "\n".join(errors)


def _task_of(log: Path) -> str:
    """The task id in a log path: .../task_id=<id>/[map_index=<i>/]attempt=<n>.log."""
    (part,) = [part for part in log.parts if part.startswith("task_id=")]
    return part.removeprefix("task_id=")


def test_the_promote_log_reads_in_the_airflow_ui(api_server: httpx.Client) -> None:
    runs = api_server.get("/api/v2/dags/rlops_sac_pipeline/dagRuns").json()["dag_runs"]
    (run,) = runs
    path = f"/api/v2/dags/rlops_sac_pipeline/dagRuns/{run['dag_run_id']}/taskInstances/promote"
    response = api_server.get(f"{path}/logs/1", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    events = [line.get("event", "") for line in response.json()["content"]]
    assert "candidate v1: promoted" in events, events[-20:]
