"""A real policy server on a free loopback port, serving from the test's SQLite MLflow registry.

The server runs in a thread of the test process (uvicorn, configured exactly as
`python -m rlops_serving` configures it) on a socket bound here, so there is no port race and
it sees the test's MLflow environment. Clients talk real HTTP to it, with the API keys below
(`AUTH`: every scope; `KEYS` by name for the tests of who may do what).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rlops_registry.registry import ModelRegistry
from rlops_serving.auth import KeyScope, token_digest
from rlops_serving.server import build_server
from rlops_serving.settings import ServingSettings
from tests.serving.policies import register_policy

MODEL = "rlops-serving-test"
START_TIMEOUT = 60.0
KEY_SCOPES = {
    "tester": sorted(KeyScope),
    "actor": [KeyScope.ACT],
    "reporter": [KeyScope.ACT, KeyScope.REPORT],
    "operator": [KeyScope.METRICS],
}
# pytest loads this file as its `conftest` and test modules import it again as
# `tests.serving.conftest`: both copies derive the same tokens from one seed per session.
_SEED = os.environ.setdefault("RLOPS_TEST_KEY_SEED", secrets.token_hex(16))
TOKENS = {
    key_id: f"rlops_{key_id}_{hashlib.sha256(f'{_SEED}:{key_id}'.encode()).hexdigest()}"
    for key_id in KEY_SCOPES
}
KEYS = {key_id: {"Authorization": f"Bearer {token}"} for key_id, token in TOKENS.items()}
AUTH = KEYS["tester"]
"""Headers of a key with every scope."""
KEY_RING = json.dumps(
    [
        {"id": key_id, "sha256": token_digest(TOKENS[key_id]), "scopes": scopes}
        for key_id, scopes in KEY_SCOPES.items()
    ]
)


@dataclass(frozen=True)
class RunningServer:
    url: str

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """`/metrics` as {(sample name, labels): value}."""
        text = httpx.get(f"{self.url}/metrics", headers=AUTH, timeout=10).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@contextmanager
def running_server(settings: ServingSettings) -> Iterator[RunningServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = build_server(settings.model_copy(update={"port": port}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, f"server not started after {START_TIMEOUT} s"
        time.sleep(0.05)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server thread did not stop"


def settings(**overrides: object) -> ServingSettings:
    """Test settings: small limits, a fast poll so hot reload shows within a second, the
    test keys."""
    defaults = {
        "model_name": MODEL,
        "poll_seconds": 0.2,
        "max_batch": 8,
        "max_body_bytes": 4096,
        "api_keys": KEY_RING,
    }
    return ServingSettings(**(defaults | overrides))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def champion(mlflow_store: str) -> str:
    """Version 1 of MODEL, promoted to `champion`."""
    version = register_policy(MODEL, reward=-1000.0, seed=1)
    ModelRegistry(MODEL).crown(version)
    return version


@pytest.fixture
def server(champion: str) -> Iterator[RunningServer]:
    with running_server(settings()) as running:
        yield running
