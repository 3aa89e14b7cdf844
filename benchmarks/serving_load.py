"""Load test: the rlops policy server vs `mlflow models serve`, same policy, same load.

    apt-get install -y wrk                       # the load generator (Debian package)
    .venv/bin/python benchmarks/serving_load.py  # ~2 min; trains a policy first if missing

The trained Pendulum policy of benchmarks/results/pendulum-seed0.pt (what export_latency.py
uses) is logged as the pipeline logs it (`rl_core.policy.policy_model`: an MLflow pyfunc model
around the TorchScript actor) into a temporary MLflow store (SQLite), registered and crowned
`champion`. Both servers then serve that very registered version, `models:/rlops-bench@champion`:
`python -m rlops_serving` (its TorchScript fast path) and `mlflow models serve --env-manager
local -w 1` (the pyfunc). Both get OMP_NUM_THREADS=1 (a second torch thread only competes with
wrk on 2 cores).

The rlops server runs twice, side by side: with an API key required (the default; the load
sends it as a bearer token) and with `RLOPS_SERVING_REQUIRE_API_KEYS=false`, so the cost of
authentication is measured in the same run; the keyed server is also loaded with episode steps
(a signed ticket checked and a new one signed per request).

Load: wrk on loopback, 1 thread, 8 connections, one observation per request (batch 1), the
loads measured in alternation for `--rounds` rounds of `--seconds` each after a warm-up.
Prints RPS and p50/p95/p99 per round, the medians, and the ratios: rlops against mlflow
(target: at least 5x the RPS with a lower p95 and p99) and auth on against off (target: within
10% of the RPS). Every process started here is stopped here.
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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from mlflow import MlflowClient

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import load_agent
from rl_core.policy.policy_model import log_policy_model
from rl_core.run.training import train
from rlops_registry.registry import CHAMPION, ModelRegistry
from rlops_serving.auth import new_token, token_digest

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
    """How to start one server process and know it is up."""

    name: str
    argv: list[str]
    env: dict[str, str]
    probe: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    """One kind of request sent to one server."""

    name: str
    url: str
    body: dict
    headers: dict[str, str] = field(default_factory=dict)


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
                if httpx.get(server.probe, headers=server.headers, timeout=2).status_code == 200:
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


def wrk(load: Load, seconds: float, script_dir: Path) -> Figures:
    script = script_dir / f"{load.name.replace(' ', '_')}.lua"
    headers = {"Content-Type": "application/json", **load.headers}
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(load.body)}'\n"
        + "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in headers.items())
        + WRK_SUMMARY
    )
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script), load.url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{load.name}: failed requests under load: {result}")
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
        f"{label:30s} {f.rps:9,.0f} {f.p50_ms:8.2f} {f.p95_ms:8.2f} {f.p99_ms:8.2f}"
        f" {f.requests:10,.0f}"
    )


def servers(model_uri: str, env: dict[str, str], token: str) -> tuple[list[Server], list[Load]]:
    """Ours with a key required and without, and mlflow's, on free loopback ports, one worker
    each; and the loads sent to them."""
    keyed, open_, theirs = (f"http://127.0.0.1:{free_port()}" for _ in range(3))
    auth = {"Authorization": f"Bearer {token}"}
    keys = [{"id": "bench", "sha256": token_digest(token), "scopes": ["act", "metrics"]}]
    serving = {"RLOPS_SERVING_MODEL_NAME": MODEL_NAME}
    rlops = [sys.executable, "-m", "rlops_serving"]
    mlflow = ["mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local", "-w", "1"]
    port = {url: url.rsplit(":")[-1] for url in (keyed, open_, theirs)}
    processes = [
        Server(
            "rlops_serving (key required)",
            rlops,
            env
            | serving
            | {"RLOPS_SERVING_PORT": port[keyed]}
            | {"RLOPS_SERVING_API_KEYS": json.dumps(keys)},
            f"{keyed}/ready",
            auth,
        ),
        Server(
            "rlops_serving (no keys)",
            rlops,
            env
            | serving
            | {"RLOPS_SERVING_PORT": port[open_]}
            | {"RLOPS_SERVING_REQUIRE_API_KEYS": "false"},
            f"{open_}/ready",
        ),
        Server(
            "mlflow models serve",
            [sys.executable, "-m", *mlflow, "-h", "127.0.0.1", "-p", port[theirs]],
            env,
            f"{theirs}/ping",
        ),
    ]
    act = {"observation": OBSERVATION}
    loads = [
        Load("rlops, key", f"{keyed}/v1/act", act, auth),
        Load("rlops, no keys", f"{open_}/v1/act", act),
        Load("rlops, key + ticket", f"{keyed}/v1/act", act | {"ticket": "filled at warm-up"}, auth),
        Load("mlflow models serve", f"{theirs}/invocations", {"inputs": [OBSERVATION]}),
    ]
    return processes, loads


def with_ticket(load: Load) -> Load:
    """The episode-step load with a real ticket, from starting an episode on its server."""
    if "ticket" not in load.body:
        return load
    body = {"observation": OBSERVATION, "start_episode": True}
    started = httpx.post(load.url, json=body, headers=load.headers, timeout=10)
    started.raise_for_status()
    return Load(load.name, load.url, load.body | {"ticket": started.json()["ticket"]}, load.headers)


def measure(loads: list[Load], args: argparse.Namespace, scratch: Path) -> list[list[Figures]]:
    """Warm every load up, then alternate them for `rounds` rounds; each load's figures."""
    for load in loads:
        answer = httpx.post(load.url, json=load.body, headers=load.headers, timeout=10)
        answer.raise_for_status()
        print(f"{load.name}: {answer.text.strip()[:160]}")
        wrk(load, args.warmup, scratch)
    print(f"\nwrk -t1 -c{CONNECTIONS} -d{args.seconds:g}s, batch 1, loopback; latencies in ms")
    print(f"{'load (round)':30s} {'RPS':>9s} {'p50':>8s} {'p95':>8s} {'p99':>8s} {'requests':>10s}")
    figures: list[list[Figures]] = [[] for _ in loads]
    for round_ in range(1, args.rounds + 1):
        for load, runs in zip(loads, figures, strict=True):
            runs.append(wrk(load, args.seconds, scratch))
            print(row(f"{load.name} ({round_})", runs[-1]))
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
        processes, loads = servers(model_uri, env, new_token("bench"))
        with ExitStack() as running:
            for number, server in enumerate(processes):
                running.enter_context(started(server, scratch / f"server{number}.log"))
            loads = [with_ticket(load) for load in loads]
            figures = [median(runs) for runs in measure(loads, args, scratch)]

    print()
    for load, median_figures in zip(loads, figures, strict=True):
        print(row(f"{load.name} (median)", median_figures))
    keyed, open_, ticketed, theirs = figures
    ratio = keyed.rps / theirs.rps
    lower = keyed.p95_ms < theirs.p95_ms and keyed.p99_ms < theirs.p99_ms
    print(
        f"\nrlops (key) over mlflow: RPS x{ratio:.1f} (target >= 5: "
        f"{'met' if ratio >= 5 else 'NOT met'}); p95 {keyed.p95_ms:.2f} vs {theirs.p95_ms:.2f} ms, "
        f"p99 {keyed.p99_ms:.2f} vs {theirs.p99_ms:.2f} ms ({'lower' if lower else 'NOT lower'})"
    )
    cost = 1 - keyed.rps / open_.rps
    print(
        f"auth on vs off: RPS {keyed.rps:,.0f} vs {open_.rps:,.0f} ({cost:+.1%} lost; target: "
        f"at most 10%: {'met' if cost <= 0.10 else 'NOT met'}); episode steps with a ticket: "
        f"{ticketed.rps:,.0f} ({1 - ticketed.rps / open_.rps:.1%} fewer than without keys)"
    )


if __name__ == "__main__":
    main()
