"""The pipeline on the production topology, triggered through Airflow's REST API as the UI does.

Every result is checked where it is stored, not through the tools' clients: Airflow's and
MLflow's rows in their two databases of one Postgres instance, artifacts as objects in S3.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow.artifacts
import mlflow.pyfunc
import psycopg2
import pytest
import torch
from psycopg2.extras import RealDictCursor

from devstack import Stack
from devstack.processes import free_port, http_ok, ref_of, spawn, stop_groups, wait_until
from devstack.stack import Database
from rl_core.policy.checkpoint import load_agent
from rl_core.policy.export import random_observations
from rlops_registry.access import VIEWER
from tests.dag.test_conf_validation import TRIGGER_REFUSALS
from tests.integration.conftest import DAG_ID, DAG_PATH, TINY_CONF, AirflowApi

pytestmark = pytest.mark.integration

MODEL = "rlops-rest"
TINY = {**TINY_CONF, "registered_model_name": MODEL}


def _rows(stack: Stack, db: Database, sql: str, *params: object) -> list[dict[str, Any]]:
    """Query one of the stack's databases directly, as the role that owns it."""
    with (
        closing(psycopg2.connect(stack.postgres_dsn(db))) as conn,
        conn.cursor(cursor_factory=RealDictCursor) as cur,
    ):
        cur.execute(sql, params)
        return [dict(row) for row in cur.fetchall()]


@dataclass(frozen=True)
class Registered:
    """What one DAG run left in the MLflow database: its run, model version and outcome."""

    run_uuid: str
    artifact_uri: str
    version: int
    source: str
    outcome: str

    @classmethod
    def of(cls, stack: Stack, dag_run_id: str) -> Registered:
        """The one version registered from an MLflow run tagged with this Airflow run id."""
        (row,) = _rows(
            stack,
            "mlflow",
            """SELECT mv.run_id AS run_uuid, run.artifact_uri, mv.version, mv.source,
                      outcome.value AS outcome
               FROM model_versions mv
               JOIN runs run ON run.run_uuid = mv.run_id
               JOIN tags dag_run ON dag_run.run_uuid = mv.run_id
               LEFT JOIN tags outcome
                 ON outcome.run_uuid = mv.run_id AND outcome.key = 'rlops.outcome'
               WHERE mv.name = %s AND dag_run.key = 'airflow.run_id' AND dag_run.value = %s""",
            MODEL,
            dag_run_id,
        )
        return cls(**row)


def _aliases(stack: Stack) -> dict[str, int]:
    sql = "SELECT alias, version FROM registered_model_aliases WHERE name = %s"
    rows = _rows(stack, "mlflow", sql, MODEL)
    return {row["alias"]: row["version"] for row in rows}


@pytest.fixture(scope="module")
def promoted(pipeline_api: AirflowApi) -> dict[str, Any]:
    """The first run on the stack: it registers MODEL's first version and makes it champion."""
    run = pipeline_api.run_to_end(TINY)
    assert run["state"] == "success", pipeline_api.tasks(run["dag_run_id"])
    return run


def test_every_bad_param_is_refused_with_400_naming_it(pipeline_api: AirflowApi) -> None:
    runs_before = pipeline_api.get(f"{DAG_PATH}/dagRuns")["total_entries"]

    for conf, param, reason in TRIGGER_REFUSALS:
        response = pipeline_api.trigger({**TINY, **conf})
        assert response.status_code == 400, (conf, response.text)
        detail = response.json()["detail"]
        assert detail.startswith(f"Invalid input for param {param}:"), (conf, detail)
        assert reason in detail, (conf, detail)

    assert pipeline_api.get(f"{DAG_PATH}/dagRuns")["total_entries"] == runs_before


def test_a_typo_the_api_accepts_fails_the_run_at_its_first_task(
    stack: Stack, pipeline_api: AirflowApi
) -> None:
    versions_before = _rows(stack, "mlflow", "SELECT count(*) AS n FROM model_versions")

    run = pipeline_api.run_to_end({**TINY, "total_timestep": 5})  # Airflow accepts unknown keys

    assert run["state"] == "failed"
    tasks = pipeline_api.tasks(run["dag_run_id"])
    assert tasks[("validate_conf", -1)] == "failed"
    assert "success" not in set(tasks.values())  # nothing trained, registered or aliased
    log = pipeline_api.task_log(run["dag_run_id"], "validate_conf")
    assert "total_timestep: unknown parameter; did you mean total_timesteps?" in log
    assert _rows(stack, "mlflow", "SELECT count(*) AS n FROM model_versions") == versions_before


def test_airflow_rows_are_in_the_airflow_database_of_the_same_instance(
    stack: Stack, pipeline_api: AirflowApi, promoted: dict[str, Any]
) -> None:
    run_id = promoted["dag_run_id"]
    (dag_run,) = _rows(
        stack,
        "airflow",
        "SELECT state, run_type, conf FROM dag_run WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id,
    )
    assert dag_run == {"state": "success", "run_type": "manual", "conf": TINY}

    # Whatever the task list is (mapped tasks included), the rows are what the API reports.
    task_rows = _rows(
        stack,
        "airflow",
        "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id,
    )
    states = {(row["task_id"], row["map_index"]): row["state"] for row in task_rows}
    assert states == pipeline_api.tasks(run_id)
    assert set(states.values()) == {"success"}

    # Both databases live in one cluster: same system identifier, different databases.
    cluster = "SELECT system_identifier, current_database() AS db FROM pg_control_system()"
    (airflow,), (mlflow,) = _rows(stack, "airflow", cluster), _rows(stack, "mlflow", cluster)
    assert airflow["system_identifier"] == mlflow["system_identifier"]
    assert (airflow["db"], mlflow["db"]) == ("airflow", "mlflow")


def test_mlflow_run_and_model_version_are_rows_in_the_mlflow_database(
    stack: Stack, promoted: dict[str, Any]
) -> None:
    registered = Registered.of(stack, promoted["dag_run_id"])

    # The version's source is the candidate's LoggedModel (MLflow 3), made by its run.
    assert registered.source.startswith("models:/m-")
    (logged,) = _rows(
        stack,
        "mlflow",
        "SELECT source_run_id, status FROM logged_models WHERE model_id = %s",
        registered.source.removeprefix("models:/"),
    )
    assert logged["source_run_id"] == registered.run_uuid
    assert registered.outcome == "promoted"
    tags = _rows(
        stack,
        "mlflow",
        "SELECT key, value FROM tags WHERE run_uuid = %s AND key LIKE 'airflow.%%'",
        registered.run_uuid,
    )
    assert {row["key"]: row["value"] for row in tags}.items() >= {
        ("airflow.dag_id", DAG_ID),
        ("airflow.run_id", promoted["dag_run_id"]),
    }
    (version,) = _rows(
        stack,
        "mlflow",
        "SELECT status FROM model_versions WHERE name = %s AND version = %s",
        MODEL,
        registered.version,
    )
    assert version["status"] == "READY"
    (run,) = _rows(
        stack, "mlflow", "SELECT status FROM runs WHERE run_uuid = %s", registered.run_uuid
    )
    assert run["status"] == "FINISHED"  # promote, the last task, closes the run


def test_checkpoint_and_policy_model_are_objects_in_the_bucket(
    stack: Stack, promoted: dict[str, Any]
) -> None:
    registered = Registered.of(stack, promoted["dag_run_id"])
    (logged,) = _rows(
        stack,
        "mlflow",
        "SELECT artifact_location FROM logged_models WHERE model_id = %s",
        registered.source.removeprefix("models:/"),
    )
    s3 = stack.s3_client()

    def objects(artifact_uri: str) -> dict[str, str]:
        """Keys under an artifact URI, by their path below it."""
        # The server proxies mlflow-artifacts:/<path> to s3://<bucket>/<path> (--serve-artifacts).
        prefix = artifact_uri.removeprefix("mlflow-artifacts:/") + "/"
        listing = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
        return {obj["Key"].removeprefix(prefix): obj["Key"] for obj in listing.get("Contents", [])}

    def archive(key: str) -> list[str]:
        body = s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()
        return zipfile.ZipFile(io.BytesIO(body)).namelist()

    run_objects = objects(registered.artifact_uri)
    model_objects = objects(logged["artifact_location"])
    # torch.save writes a zip around data.pkl; TorchScript adds the compiled code/ of the model.
    checkpoint = run_objects["checkpoint/checkpoint.pt"]
    assert any(name.endswith("/data.pkl") for name in archive(checkpoint))
    assert any("/code/" in name for name in archive(model_objects["artifacts/actor.pt"]))
    assert {"MLmodel", "pyfunc_policy.py", "input_example.json"} <= set(model_objects)


def test_champion_points_at_the_new_version(stack: Stack, promoted: dict[str, Any]) -> None:
    version = Registered.of(stack, promoted["dag_run_id"]).version

    assert _aliases(stack) == {"champion": version, "challenger": version}


def test_impossible_min_reward_leaves_the_champion_where_it_was(
    stack: Stack, pipeline_api: AirflowApi, promoted: dict[str, Any]
) -> None:
    champion = Registered.of(stack, promoted["dag_run_id"]).version

    # Pendulum's rewards are never positive: a mean return of 0 is out of reach.
    run = pipeline_api.run_to_end({**TINY, "seed": 1, "min_reward": 0})

    assert run["state"] == "success", pipeline_api.tasks(run["dag_run_id"])  # an outcome
    rejected = Registered.of(stack, run["dag_run_id"])
    assert rejected.outcome.startswith("rejected: reward ")
    assert rejected.version != champion
    assert _aliases(stack) == {"champion": champion, "challenger": rejected.version}


def _trained_actions(run_id: str, observations: torch.Tensor, scratch: Path) -> torch.Tensor:
    """What the candidate's own training checkpoint does on `observations`."""
    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="checkpoint/checkpoint.pt", dst_path=str(scratch)
    )
    agent, _ = load_agent(path)
    with torch.inference_mode():
        return agent.actor.deterministic_action(observations)


def test_mlflow_itself_loads_and_serves_the_champion(
    stack: Stack, promoted: dict[str, Any], monkeypatch, tmp_path: Path
) -> None:
    """The registered version is a real MLflow model: `mlflow.pyfunc.load_model` and
    `mlflow models serve` take it by alias, and act like the trained actor."""
    for name, value in stack.mlflow_client_env(VIEWER.name).items():
        monkeypatch.setenv(name, value)
    registered = Registered.of(stack, promoted["dag_run_id"])
    observations = random_observations("Pendulum-v1", 32, seed=77)
    expected = _trained_actions(registered.run_uuid, observations, tmp_path)

    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    loaded = torch.as_tensor(pyfunc.predict(observations.numpy()))
    torch.testing.assert_close(loaded, expected, atol=1e-5, rtol=0)

    port = free_port()
    serve = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion"]
    serve += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    venv_bin = str(Path(sys.executable).parent)  # `mlflow models serve` runs `uvicorn` from PATH
    env = {
        **os.environ,
        **stack.mlflow_client_env(VIEWER.name),
        "PATH": os.pathsep.join([venv_bin, os.environ["PATH"]]),
    }
    server = spawn(serve, env, tmp_path / "mlflow-models-serve.log")
    group = ref_of(server)
    try:
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/ping"),
            what="mlflow models serve",
            procs={"mlflow models serve": server},
            logs={"mlflow models serve": tmp_path / "mlflow-models-serve.log"},
            timeout=120,
        )
        answer = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"inputs": observations.tolist()},
            timeout=30,
            trust_env=False,
        )
    finally:
        stop_groups([group])
        server.wait(timeout=30)
    assert answer.status_code == 200, answer.text
    served = torch.tensor(answer.json()["predictions"])
    torch.testing.assert_close(served, expected, atol=1e-5, rtol=0)
