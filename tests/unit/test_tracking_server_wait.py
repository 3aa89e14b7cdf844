"""An unreachable MLflow server is waited for, loudly and for a bounded time, then named.

Real sockets on 127.0.0.1: a closed port (connection refused), and a listening socket that
never answers, which is what a paused (SIGSTOP'd) server looks like from the client: the
kernel completes the TCP handshake, no HTTP answer ever comes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator

import pytest

from rl_core.common.tracking import (
    MLFLOW_REQUEST_BOUNDS,
    WAIT_SECONDS_ENV,
    TrackingServerUnreachable,
    bound_mlflow_requests,
    wait_for_tracking_server,
)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("server", ["closed_port", "silent_server"])
def test_the_wait_is_bounded_logged_and_names_the_uri(request, server, monkeypatch, caplog):
    port = request.getfixturevalue(server)
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv(WAIT_SECONDS_ENV, "4")
    start = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(TrackingServerUnreachable) as failed:
        wait_for_tracking_server(uri)
    assert time.monotonic() - start < 30  # bounded: the budget plus one attempt's timeout
    assert str(failed.value).startswith(f"MLflow tracking server {uri} did not answer")
    assert "RLOPS_MLFLOW_WAIT_SECONDS" in str(failed.value)
    waits = [r.getMessage() for r in caplog.records if "waiting for the MLflow" in r.getMessage()]
    assert waits, "every retry must say what it waits for"
    assert all(uri in line and "giving up after 4 s" in line for line in waits)


def test_a_local_store_needs_no_wait(tmp_path) -> None:
    wait_for_tracking_server(f"sqlite:///{tmp_path / 'mlflow.db'}")  # returns at once
    wait_for_tracking_server("")


def test_mlflow_request_bounds_fill_only_what_is_unset(monkeypatch) -> None:
    for name in MLFLOW_REQUEST_BOUNDS:
        monkeypatch.setenv(name, "")  # recorded, so the test leaves the environment as it was
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    bound_mlflow_requests()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"  # the user's setting stays
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "4"
