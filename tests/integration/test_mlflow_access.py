"""The registry has users: on the devstack's MLflow (basic-auth), the policy server's user cannot
steer the champion, people can only look, and nobody gets in without a password.

Every refused write is made over real HTTP as the REST client would, then read back: nothing
changed. The fixtures are made by the `airflow` user, as the pipeline makes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from devstack import Stack
from rlops_registry.access import AIRFLOW, POLICY_SERVER, VIEWER
from rlops_registry.served_episodes import DEFAULT_SERVED_EXPERIMENT

MODEL = "rlops-sac-access-test"
ORIGINAL = b"the actor airflow registered"
API = "/api/2.0/mlflow"


@dataclass(frozen=True)
class Registered:
    """What airflow made: a run with an actor, two versions of a model, `champion` on 1."""

    experiment_id: str
    run_id: str
    actor_path: str  # of the run's actor.pt, as the artifact proxy names it


def _client(stack: Stack, user: str) -> Iterator[MlflowClient]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.mlflow_client_env(user).items():
            patch.setenv(name, value)
        yield MlflowClient(stack.mlflow_uri)


@pytest.fixture(scope="module")
def airflow_client(stack: Stack) -> Iterator[MlflowClient]:
    yield from _client(stack, AIRFLOW.name)


@pytest.fixture(scope="module")
def registered(
    airflow_client: MlflowClient, tmp_path_factory: pytest.TempPathFactory
) -> Registered:
    client = airflow_client
    experiment_id = client.create_experiment("access-test")
    run_id = client.create_run(experiment_id).info.run_id
    actor = Path(tmp_path_factory.mktemp("actor")) / "actor.pt"
    actor.write_bytes(ORIGINAL)
    client.log_artifact(run_id, str(actor), "model")
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(MODEL, "champion", "1")
    return Registered(experiment_id, run_id, f"{experiment_id}/{run_id}/artifacts/model/actor.pt")


def _http(stack: Stack, user: str | None) -> httpx.Client:
    """Basic auth as `user` (None: no credentials at all)."""
    auth = None
    if user is not None:
        env = stack.mlflow_client_env(user)
        auth = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    return httpx.Client(base_url=stack.mlflow_uri, auth=auth, trust_env=False, timeout=30)


def _champion(client: MlflowClient) -> str:
    return client.get_model_version_by_alias(MODEL, "champion").version


def _actor(stack: Stack, registered: Registered) -> bytes:
    with _http(stack, VIEWER.name) as http:
        response = http.get(f"/api/2.0/mlflow-artifacts/artifacts/{registered.actor_path}")
    response.raise_for_status()
    return response.content


def test_the_policy_server_cannot_move_an_alias(
    stack: Stack, registered: Registered, airflow_client: MlflowClient
) -> None:
    with _http(stack, POLICY_SERVER.name) as http:
        assert http.get(
            f"{API}/registered-models/alias", params={"name": MODEL, "alias": "champion"}
        ).is_success
        body = {"name": MODEL, "alias": "champion", "version": "2"}
        moved = http.post(f"{API}/registered-models/alias", json=body)
        dropped = http.request("DELETE", f"{API}/registered-models/alias", json=body)
    assert (moved.status_code, dropped.status_code) == (403, 403), moved.text
    assert "Permission denied" in moved.text
    assert _champion(airflow_client) == "1"


def test_the_policy_server_cannot_tag_a_version_write_another_experiment_or_an_artifact(
    stack: Stack, registered: Registered, airflow_client: MlflowClient
) -> None:
    tag = {"name": MODEL, "version": "1", "key": "rlops.gate.passed", "value": "true"}
    with _http(stack, POLICY_SERVER.name) as http:
        tagged = http.post(f"{API}/model-versions/set-tag", json=tag)
        new_run = http.post(f"{API}/runs/create", json={"experiment_id": registered.experiment_id})
        metric = {
            "run_id": registered.run_id,
            "key": "episode_return",
            "value": 1e9,
            "timestamp": 0,
        }
        logged = http.post(f"{API}/runs/log-metric", json=metric)
        overwritten = http.put(
            f"/api/2.0/mlflow-artifacts/artifacts/{registered.actor_path}", content=b"evil"
        )
    refused = [r.status_code for r in (tagged, new_run, logged, overwritten)]
    assert refused == [403, 403, 403, 403], [r.text for r in (tagged, new_run, logged, overwritten)]
    assert "rlops.gate.passed" not in airflow_client.get_model_version(MODEL, "1").tags
    runs = airflow_client.search_runs([registered.experiment_id])
    assert [run.info.run_id for run in runs] == [registered.run_id]
    assert "episode_return" not in airflow_client.get_run(registered.run_id).data.metrics
    assert _actor(stack, registered) == ORIGINAL


def test_the_policy_server_writes_its_served_episodes_experiment(stack: Stack) -> None:
    with _http(stack, POLICY_SERVER.name) as http:
        found = http.get(
            f"{API}/experiments/get-by-name", params={"experiment_name": DEFAULT_SERVED_EXPERIMENT}
        )
        experiment_id = found.json()["experiment"]["experiment_id"]
        created = http.post(f"{API}/runs/create", json={"experiment_id": experiment_id})
    assert created.status_code == 200, created.text


def test_airflow_moves_the_alias_the_server_could_not(
    registered: Registered, airflow_client: MlflowClient
) -> None:
    airflow_client.set_registered_model_alias(MODEL, "challenger", "2")
    assert airflow_client.get_model_version_by_alias(MODEL, "challenger").version == "2"
    airflow_client.set_model_version_tag(MODEL, "2", "rlops.gate.passed", "true")
    assert airflow_client.get_model_version(MODEL, "2").tags["rlops.gate.passed"] == "true"


def test_the_viewer_reads_but_cannot_write(
    stack: Stack, registered: Registered, airflow_client: MlflowClient
) -> None:
    with _http(stack, VIEWER.name) as http:
        read = http.get(f"{API}/registered-models/get", params={"name": MODEL})
        body = {"name": MODEL, "alias": "champion", "version": "2"}
        moved = http.post(f"{API}/registered-models/alias", json=body)
        new_run = http.post(f"{API}/runs/create", json={"experiment_id": registered.experiment_id})
    assert read.status_code == 200 and read.json()["registered_model"]["name"] == MODEL
    assert (moved.status_code, new_run.status_code) == (403, 403)
    assert _champion(airflow_client) == "1"
    assert _actor(stack, registered) == ORIGINAL  # the artifact proxy reads for the viewer


@pytest.mark.parametrize("auth", [None, ("admin", "password1234"), ("airflow", "wrong")])
def test_without_a_valid_password_nothing_is_answered(
    stack: Stack, registered: Registered, auth: tuple[str, str] | None
) -> None:
    with httpx.Client(base_url=stack.mlflow_uri, auth=auth, trust_env=False) as http:
        read = http.get(f"{API}/registered-models/get", params={"name": MODEL})
        body = {"name": MODEL, "alias": "champion", "version": "2"}
        moved = http.post(f"{API}/registered-models/alias", json=body)
    assert (read.status_code, moved.status_code) == (401, 401)
