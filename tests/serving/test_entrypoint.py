"""`python -m rlops_serving` as a real process, configured only through its environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO
from tests.serving.conftest import MODEL, START_TIMEOUT

STOP_TIMEOUT = 30


def _env(**serving: str) -> dict[str, str]:
    paths = [str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]
    variables = {f"RLOPS_SERVING_{name.upper()}": value for name, value in serving.items()}
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), **variables}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _minted_key(keys_file: Path, *scopes: str) -> dict[str, str]:
    """A key minted by `python -m rlops_serving.auth new`, its entry written to `keys_file`
    as an operator would; returns the client's headers."""
    argv = [sys.executable, "-m", "rlops_serving.auth", "new", "--id", "client"]
    done = subprocess.run(
        [*argv, *(part for s in scopes for part in ("--scope", s))],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    token_line, entry_line = done.stdout.splitlines()
    token = token_line.rsplit(" ", 1)[-1]
    entry = json.loads(entry_line.split(": ", 1)[1])
    assert token not in entry_line  # only its hash is stored
    keys_file.write_text(json.dumps([entry]))
    return {"Authorization": f"Bearer {token}"}


def test_serves_the_champion_and_stops_cleanly(champion, tmp_path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    keys_file = tmp_path / "keys.json"
    auth = _minted_key(keys_file, "act", "metrics")
    process = subprocess.Popen(
        [sys.executable, "-m", "rlops_serving"],
        env=_env(model_name=MODEL, port=str(port), poll_seconds="1", api_keys_file=str(keys_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, process.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "not ready in time"
            try:
                if httpx.get(f"{url}/ready", headers=auth, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        body = {"observation": [1.0, 0.0, 0.0]}
        answer = httpx.post(f"{url}/v1/act", json=body, headers=auth, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == champion
        assert httpx.post(f"{url}/v1/act", json=body, timeout=10).status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=STOP_TIMEOUT)[0]
    assert f"serving {MODEL} v{champion}" in output
    assert "Application shutdown complete" in output, output[-3000:]  # graceful
    # uvicorn re-raises the signal it shut down on: the usual exit status of a SIGTERM.
    assert process.returncode == -signal.SIGTERM


def test_a_bad_setting_stops_it_at_start_naming_the_variable() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rlops_serving"],
        env=_env(max_batch="0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "max_batch" in done.stderr
    assert "greater than or equal to 1" in done.stderr


def test_without_keys_it_does_not_start_and_says_how_to_get_one() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rlops_serving"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "no API keys" in done.stderr
    assert "python -m rlops_serving.auth new" in done.stderr
    assert "RLOPS_SERVING_API_KEYS_FILE" in done.stderr


def test_the_server_imports_nothing_of_airflow() -> None:
    """The server stands on rl_core and rlops_registry alone: no Airflow in its image."""
    code = (
        "import sys\n"
        "import rlops_serving.server, rlops_serving.app\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'rlops_airflow'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
