"""Smoke test of the local stack: the compose topology, as real processes on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from devstack import Stack

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _query(dsn: str, sql: str, *params: str) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_one_postgres_instance_serves_both_databases(stack: Stack) -> None:
    databases = {
        row[0] for row in _query(stack.postgres_dsn("postgres"), "SELECT datname FROM pg_database")
    }
    assert {"airflow", "mlflow"} <= databases

    # Each tool migrated its own database: two alembic_version tables, two different heads.
    heads = {
        db: _query(stack.postgres_dsn(db), "SELECT version_num FROM alembic_version")
        for db in ("airflow", "mlflow")
    }
    assert all(len(rows) == 1 for rows in heads.values()), heads
    assert heads["airflow"] != heads["mlflow"]


def test_each_role_only_reaches_its_own_database(stack: Stack) -> None:
    # The mlflow role, with its own password, asking for the airflow database.
    intruder = stack.postgres_dsn("mlflow").rsplit("/", 1)[0] + "/airflow"
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(intruder)


def test_mlflow_artifacts_are_objects_in_the_bucket(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client has no S3 credentials: the server proxies artifacts (--serve-artifacts). It
    # logs in as the pipeline's MLflow user.
    for name, value in stack.mlflow_client_env().items():
        monkeypatch.setenv(name, value)
    client = MlflowClient(tracking_uri=stack.mlflow_uri)
    experiment_id = client.create_experiment("smoke")
    run_id = client.create_run(experiment_id).info.run_id
    client.log_text(run_id, "hello from the smoke test", "notes/hello.txt")
    client.set_terminated(run_id)

    keys = [
        obj["Key"] for obj in stack.s3_client().list_objects_v2(Bucket=stack.bucket)["Contents"]
    ]
    key = next(k for k in keys if k.endswith(f"{run_id}/artifacts/notes/hello.txt"))
    body = stack.s3_client().get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    assert body == b"hello from the smoke test"
    runs = _query(
        stack.postgres_dsn("mlflow"), "SELECT status FROM runs WHERE run_uuid = %s", run_id
    )
    assert runs == [("FINISHED",)]


def test_airflow_rest_api_answers_with_a_token(stack: Stack) -> None:
    with httpx.Client(base_url=stack.airflow_url, trust_env=False, timeout=30) as api:
        assert api.get("/api/v2/dags").status_code == 401
        login = {"username": stack.airflow_username, "password": stack.airflow_password}
        response = api.post("/auth/token", json=login)
        assert response.status_code == 201, response.text
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        dags = api.get("/api/v2/dags", headers=headers)
    assert dags.status_code == 200, dags.text
    assert "dags" in dags.json()


def test_status_command_reports_every_service_running(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "--state-dir", str(stack.state_dir), "status"],
        cwd=REPO,  # devstack is a folder of the repo, not an installed package
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.mlflow_uri in done.stdout and stack.airflow_url in done.stdout
