"""A paused MLflow server (SIGSTOP: it still accepts TCP connections, never answers) makes a
training run say what it waits for, then fail with one line naming the tracking URI, and the
same run goes through once the server is back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devstack import Stack
from rl_core.common.tracking import WAIT_SECONDS_ENV, wait_for_tracking_server

pytestmark = pytest.mark.integration
TINY = ["total_timesteps=300", "hidden_sizes=[16,16]", "learning_starts=50", "eval_seeds=[1000]"]


@contextmanager
def paused(stack: Stack) -> Iterator[None]:
    group = stack.processes["mlflow"].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def _train(stack: Stack, tmp_path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.mlflow_client_env(), WAIT_SECONDS_ENV: "6"}
    command = [sys.executable, "-m", "rl_core", "train", "--no-progress", "--out", str(tmp_path)]
    return subprocess.run(
        [*command, "--set", *TINY], env=env, capture_output=True, text=True, timeout=300
    )


def test_a_paused_server_is_waited_for_then_named(stack: Stack, tmp_path) -> None:
    with paused(stack):
        done = _train(stack, tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    output = " ".join((done.stdout + done.stderr).split())
    assert f"error: MLflow tracking server {stack.mlflow_uri} did not answer" in output
    assert f"waiting for the MLflow tracking server {stack.mlflow_uri}" in output
    assert "Traceback" not in output

    wait_for_tracking_server(stack.mlflow_uri)  # answers again once resumed
    again = _train(stack, tmp_path)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "MLflow run" in again.stdout
