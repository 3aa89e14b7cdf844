"""Attacks on the devstack's policy server, over real HTTP, with MLflow's basic-auth behind it.

The server is the stack's own (`python -m rlops_serving`, logged in to MLflow as
`policy-server`, API keys minted by devstack). The champion it serves is registered and crowned
by the `airflow` user, as the pipeline does. Nobody without the right key gets an action or a
report in; no forged, unticketed or replayed report reaches MLflow while honest ones do; and the
server's own MLflow identity cannot move the champion.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import httpx
import psutil
import pytest
from mlflow import MlflowClient

from devstack import Stack
from devstack.serving import CLIENT_KEY, MODEL_NAME
from devstack.stack import SERVING
from rlops_registry import tags
from rlops_registry.access import AIRFLOW, POLICY_SERVER, VIEWER
from rlops_registry.registry import CHAMPION, ModelRegistry
from rlops_registry.served_episodes import served_experiment, served_returns
from rlops_serving.tickets import TicketSigner, new_episode
from tests.integration.conftest import poll
from tests.serving.policies import ENV_ID, register_policy

pytestmark = pytest.mark.integration
FORGED_REPORTS = 300
"""As many reports as the issue's flood: a third each forged, id-less and of the old shape."""
READY_TIMEOUT = 30.0
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def mlflow_as(stack: Stack, user: str) -> Iterator[None]:
    """MLflow clients in this block act as `user` of the stack's MLflow."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stack.mlflow_client_env(user).items():
            patch.setenv(name, value)
        yield


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Served:
    """What airflow registered: the champion the server serves, and another version."""

    champion: str
    other: str


@pytest.fixture(scope="module")
def served(stack: Stack) -> Served:
    with mlflow_as(stack, AIRFLOW.name):
        other = register_policy(MODEL_NAME, reward=-1500.0, seed=2)
        champion = register_policy(MODEL_NAME, reward=-1000.0, seed=1)
        ModelRegistry(MODEL_NAME).crown(champion)

    def serving() -> str | None:
        ready = httpx.get(
            f"{stack.serving_url}/ready",
            headers=bearer(stack.serving_keys.metrics_token),
            timeout=5,
            trust_env=False,
        )
        version = ready.json().get("model_version") if ready.status_code == 200 else None
        return version if version == champion else None

    poll(serving, f"the server serving v{champion}", timeout=READY_TIMEOUT)
    return Served(champion, other)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.serving_url, timeout=10, trust_env=False) as client:
        yield client


def detail(answer: httpx.Response) -> Any:
    return answer.json()["detail"]


def fields(answer: httpx.Response) -> set[str]:
    """The body fields a 4xx names."""
    return {"/".join(map(str, error["loc"][1:])) for error in detail(answer)}


def play(http: httpx.Client, token: str, steps: int) -> tuple[str, float, str]:
    """An honest episode of Pendulum with the server's actions: (last ticket, return, version)."""
    env = gymnasium.make(ENV_ID)
    observation, _ = env.reset(seed=secrets.randbelow(1000))
    body: dict[str, Any] = {"start_episode": True}
    total = 0.0
    for _ in range(steps):
        body["observation"] = observation.tolist()
        answer = http.post("/v1/act", json=body, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        body = {"ticket": answer.json()["ticket"]}
        observation, reward, *_ = env.step(answer.json()["action"])
        total += float(reward)
    env.close()
    return body["ticket"], total, answer.json()["model_version"]


# -- (a) who may call --------------------------------------------------------------------------


def test_no_key_a_wrong_key_or_a_wrong_scope_gets_nothing(
    stack: Stack, served: Served, http: httpx.Client
) -> None:
    keys = stack.serving_keys
    observation = {"observation": [1.0, 0.0, 0.0]}
    guessed = f"rlops_{CLIENT_KEY}_{secrets.token_urlsafe(32)}"
    refused = {
        "anonymous act": (http.post("/v1/act", json=observation), 401, "no API key"),
        "guessed token": (
            http.post("/v1/act", json=observation, headers=bearer(guessed)),
            401,
            "unknown",
        ),
        "metrics token acts": (
            http.post("/v1/act", json=observation, headers=bearer(keys.metrics_token)),
            403,
            "lacks scope 'act'",
        ),
        "metrics token reports": (
            http.post("/v1/episodes", json={}, headers=bearer(keys.metrics_token)),
            403,
            "lacks scope 'report'",
        ),
        "anonymous report": (http.post("/v1/episodes", json={}), 401, "no API key"),
        "client reads metrics": (
            http.get("/metrics", headers=bearer(keys.client_token)),
            403,
            "lacks scope 'metrics'",
        ),
        "anonymous metrics": (http.get("/metrics"), 401, "no API key"),
    }
    for name, (answer, status, words) in refused.items():
        assert (answer.status_code, words in answer.text) == (status, True), (name, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer"), name
    # The same routes answer the right keys; /health answers anyone.
    act = http.post("/v1/act", json=observation, headers=bearer(keys.client_token))
    assert act.status_code == 200 and act.json()["model_version"] == served.champion
    assert http.get("/metrics", headers=bearer(keys.metrics_token)).status_code == 200
    assert http.get("/health").status_code == 200


# -- (b) and (c) the evidence --------------------------------------------------------------------


def test_forged_evidence_is_refused_and_only_honest_episodes_reach_mlflow(
    stack: Stack, served: Served, http: httpx.Client
) -> None:
    token = stack.serving_keys.client_token
    auth = bearer(token)
    version = served.champion
    first_ticket, first_return, played_by = play(http, token, 20)
    assert played_by == version
    honest = {"ticket": first_ticket, "return": first_return, "length": 20}
    accepted = http.post("/v1/episodes", json=honest, headers=auth)
    assert accepted.status_code == 202, accepted.text

    flood = [
        *({"ticket": new_ticket(), "return": -1600.0, "length": 200} for _ in range(100)),
        *({"return": -1600.0, "length": 200} for _ in range(100)),  # id-less
        *(
            {"episode_id": secrets.token_hex(8), "return": -1600.0, "length": 200}
            for _ in range(100)
        ),  # the old, unticketed shape
    ]
    assert len(flood) == FORGED_REPORTS
    for body in flood:
        answer = http.post("/v1/episodes", json=body, headers=auth)
        assert answer.status_code == 422 and "ticket" in fields(answer), answer.text

    ticket, _, _ = play(http, token, 3)
    guessed_secret = TicketSigner(secrets.token_bytes(32), 3600)
    never_served = guessed_secret.encode(guessed_secret.start(version, CLIENT_KEY, new_episode()))
    attacks = {
        "-3.4e38": ({"ticket": ticket, "return": -3.4e38, "length": 3}, 422, "return"),
        "longer than served": ({"ticket": ticket, "return": -30.0, "length": 4}, 422, "length"),
        "never served": ({"ticket": never_served, "return": -30.0, "length": 3}, 422, "ticket"),
        "replayed": (honest, 409, "ticket"),
    }
    for name, (body, status, field) in attacks.items():
        answer = http.post("/v1/episodes", json=body, headers=auth)
        assert (answer.status_code, fields(answer)) == (status, {field}), (name, answer.text)

    last_ticket, last_return, _ = play(http, token, 10)
    last = {"ticket": last_ticket, "return": last_return, "length": 10}
    assert http.post("/v1/episodes", json=last, headers=auth).status_code == 202

    # Flushed in order: once the last honest report is in MLflow, anything taken before it is.
    with mlflow_as(stack, VIEWER.name):
        returns = poll(
            lambda: found if len(found := served_returns(MODEL_NAME, version, 0)) >= 2 else None,
            "both honest reports in MLflow",
            timeout=30,
        )
        assert returns == pytest.approx([first_return, last_return])
        writers = {run.data.tags[tags.SERVED_BY] for run in served_runs(version)}
    # Written by the server itself, which holds only the policy-server login.
    assert stack.serving_env()["MLFLOW_TRACKING_USERNAME"] == POLICY_SERVER.name
    server_pid = stack.processes[SERVING].pid
    assert [writer.split(":")[1] for writer in writers] == [str(server_pid)]


def new_ticket() -> str:
    """64 characters of base64url, as a ticket looks: never signed by the server."""
    return secrets.token_urlsafe(48)


def served_runs(version: str) -> list[Any]:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(served_experiment())
    assert experiment is not None
    query = (
        f"tags.`{tags.MODEL_NAME}` = '{MODEL_NAME}' and tags.`{tags.MODEL_VERSION}` = '{version}'"
    )
    return client.search_runs([experiment.experiment_id], filter_string=query)


# -- (d) the server's identity -------------------------------------------------------------------


def test_the_servers_mlflow_login_cannot_move_the_champion(
    stack: Stack, served: Served, http: httpx.Client
) -> None:
    env = stack.serving_env()  # exactly what the server process was started with
    login = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    assert login[0] == POLICY_SERVER.name
    body = {"name": MODEL_NAME, "alias": CHAMPION, "version": served.other}
    moved = httpx.post(
        f"{stack.mlflow_uri}/api/2.0/mlflow/registered-models/alias",
        json=body,
        auth=login,
        timeout=10,
        trust_env=False,
    )
    assert moved.status_code == 403, moved.text
    with mlflow_as(stack, VIEWER.name):
        assert ModelRegistry(MODEL_NAME).alias(CHAMPION).version == served.champion
    metrics = bearer(stack.serving_keys.metrics_token)
    assert http.get("/ready", headers=metrics).json()["model_version"] == served.champion


# -- how devstack runs it -----------------------------------------------------------------------


def test_the_server_holds_the_keys_hashes_and_people_are_told_the_tokens(stack: Stack) -> None:
    keys = stack.serving_keys
    tokens = (keys.client_token, keys.metrics_token)
    leader = psutil.Process(stack.processes[SERVING].pid)
    environ = leader.environ()
    assert environ["RLOPS_SERVING_API_KEYS"] == keys.key_list()
    assert not [value for value in environ.values() if any(t in value for t in tokens)]
    assert environ["MLFLOW_TRACKING_USERNAME"] == POLICY_SERVER.name
    assert {conn.laddr.ip for conn in leader.net_connections("inet") if not conn.raddr} == {
        "127.0.0.1"
    }
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "--state-dir", str(stack.state_dir), "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert stack.serving_url in done.stdout
    assert f"Authorization: Bearer {keys.client_token}" in done.stdout
