"""Load test: the rlops policy server vs `mlflow models serve`, same policy, same load.

    apt-get install -y wrk                       # the load generator (Debian package)
    .venv/bin/python benchmarks/serving_load.py  # ~2 min; trains a policy first if missing

The trained Pendulum policy of benchmarks/results/pendulum-seed0.pt (what export_latency.py
uses) is logged as the pipeline logs it (`rl_core.policy_model`: an MLflow pyfunc model around
the TorchScript actor) into a temporary MLflow store (SQLite), registered and crowned
`champion`. Both servers then serve that very registered version, `models:/rlops-bench@champion`:
`python -m rlops_serving` (its TorchScript fast path) and `mlflow models serve --env-manager
local -w 1` (the pyfunc). Both get OMP_NUM_THREADS=1 (a second torch thread only competes with
wrk on 2 cores).

Load: wrk on loopback, 1 thread, 8 connections, one observation per request (batch 1), the
servers measured in alternation for `--rounds` rounds of `--seconds` each after a warm-up.
Prints RPS and p50/p95/p99 per round, the medians, and the ratios; the issue's target is at
least 5x mlflow's RPS with a lower p95 and p99. Every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
from mlflow import MlflowClient

from rl_core.checkpoint import load_agent
from rl_core.config import SACConfig
from rl_core.policy_model import log_policy_model
from rl_core.training import train
from rlops_registry.registry import CHAMPION, ModelRegistry

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "benchmarks" / "results" / "pendulum-seed0.pt"
MODEL_NAME = "rlops-bench"
OBSERVATION = [0.5, -0.3, 0.8]
CONNECTIONS = 8
START_TIMEOUT = 120.0
WRK_SUMMARY = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "non_2xx": %d, "socket_errors": %d, '
    .. '"p50_ms": %f, "p95_ms": %f, "p99_ms": %f, "max_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3))
end
"""


@dataclass(frozen=True)
class Server:
    """How to start one server, know it is up, and load it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    probe: str
    url: str
    body: dict


@dataclass(frozen=True)
class Figures:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def started(server: Server, log: Path) -> Iterator[None]:
    """Run the server in its own process group until the block ends, once its probe answers."""
    with log.open("w") as out:
        process = subprocess.Popen(
            server.argv,
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server.name} exited at start:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{server.name}: {server.probe} silent for {START_TIMEOUT:.0f} s"
                )
            try:
                if httpx.get(server.probe, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (mlflow's server is a child), SIGKILL after 30 s."""
    with suppress(ProcessLookupError):  # the whole group already exited
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def trained_checkpoint() -> Path:
    if not CHECKPOINT.exists():
        print(f"{CHECKPOINT} missing: training the default config first (~2 min)")
        train(SACConfig(), checkpoint_path=CHECKPOINT, show_progress=False)
    return CHECKPOINT


def register_champion(checkpoint: Path) -> str:
    """The policy as the pipeline ships it, registered and crowned; its `models:/` alias URI."""
    agent, config = load_agent(checkpoint)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("serving-load")).info.run_id
    logged = log_policy_model(agent.actor, config.env_id, run_id)
    registry = ModelRegistry(MODEL_NAME)
    version = registry.register(logged.model_uri, logged.model_id, run_id, "benchmark", {})
    registry.crown(version.version)
    return f"models:/{MODEL_NAME}@{CHAMPION}"


def wrk(server: Server, seconds: float, script_dir: Path) -> Figures:
    script = script_dir / f"{server.name.replace(' ', '_')}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(server.body)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + WRK_SUMMARY
    )
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script), server.url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{server.name}: failed requests under load: {result}")
    return Figures(
        result["requests"] / result["seconds"],
        result["p50_ms"],
        result["p95_ms"],
        result["p99_ms"],
        result["requests"],
    )


def median(figures: list[Figures]) -> Figures:
    fields = Figures.__dataclass_fields__
    return Figures(*(statistics.median(getattr(f, name) for f in figures) for name in fields))


def row(label: str, f: Figures) -> str:
    return (
        f"{label:28s} {f.rps:9,.0f} {f.p50_ms:8.2f} {f.p95_ms:8.2f} {f.p99_ms:8.2f}"
        f" {f.requests:10,.0f}"
    )


def servers(model_uri: str, env: dict[str, str]) -> tuple[Server, Server]:
    """Ours and mlflow's, on free loopback ports, one worker each."""
    ours, theirs = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    serving_env = {
        "RLOPS_SERVING_MODEL_NAME": MODEL_NAME,
        "RLOPS_SERVING_PORT": ours.rsplit(":")[-1],
    }
    mlflow = ["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local", "-w", "1"]
    return (
        Server(
            "rlops_serving",
            [sys.executable, "-m", "rlops_serving"],
            env | serving_env,
            f"{ours}/ready",
            f"{ours}/v1/act",
            {"observation": OBSERVATION},
        ),
        Server(
            "mlflow models serve",
            [sys.executable, "-m", *mlflow, "-h", "127.0.0.1", "-p", theirs.rsplit(":")[-1]],
            env,
            f"{theirs}/ping",
            f"{theirs}/invocations",
            {"inputs": [OBSERVATION]},
        ),
    )


def measure(
    pair: tuple[Server, Server], args: argparse.Namespace, scratch: Path
) -> list[list[Figures]]:
    """Warm both up, then alternate them for `rounds` rounds; each server's figures."""
    for server in pair:
        answer = httpx.post(server.url, json=server.body, timeout=10)
        answer.raise_for_status()
        print(f"{server.name}: {answer.text.strip()}")
        wrk(server, args.warmup, scratch)
    print(f"\nwrk -t1 -c{CONNECTIONS} -d{args.seconds:g}s, batch 1, loopback; latencies in ms")
    print(
        f"{'server (round)':28s} {'RPS':>9s} {'p50':>8s} {'p95':>8s} {'p99':>8s} {'requests':>10s}"
    )
    figures: list[list[Figures]] = [[], []]
    for round_ in range(1, args.rounds + 1):
        for server, runs in zip(pair, figures, strict=True):
            runs.append(wrk(server, args.seconds, scratch))
            print(row(f"{server.name} ({round_})", runs[-1]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    checkpoint = trained_checkpoint()

    with tempfile.TemporaryDirectory(prefix="serving-load-") as tmp:
        scratch = Path(tmp)
        mlflow_env = {
            "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        os.environ.update(mlflow_env)
        os.chdir(scratch)  # MLflow's default artifact root (./mlruns) lands in the temp folder
        model_uri = register_champion(checkpoint)
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            # `mlflow models serve` runs `uvicorn` from PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
        }
        pair = servers(model_uri, env)
        with (
            started(pair[0], scratch / "rlops_serving.log"),
            started(pair[1], scratch / "mlflow.log"),
        ):
            ours, theirs = (median(runs) for runs in measure(pair, args, scratch))

    print()
    print(row("rlops_serving (median)", ours))
    print(row("mlflow models serve (median)", theirs))
    ratio = ours.rps / theirs.rps
    lower = ours.p95_ms < theirs.p95_ms and ours.p99_ms < theirs.p99_ms
    print(
        f"\nRPS ratio x{ratio:.1f} (target >= 5: {'met' if ratio >= 5 else 'NOT met'}); "
        f"p95 {ours.p95_ms:.2f} vs {theirs.p95_ms:.2f} ms, p99 {ours.p99_ms:.2f} vs "
        f"{theirs.p99_ms:.2f} ms ({'lower' if lower else 'NOT lower'})"
    )


if __name__ == "__main__":
    main()
