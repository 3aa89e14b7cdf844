"""The CeleryExecutor parts of the stack: a Redis broker, and Celery workers that share no disk.

Each worker stands for a machine of its own: its own AIRFLOW_HOME (so its own task logs), TMPDIR
and copy of dags/, and its own loopback address (127.0.0.2, 127.0.0.3, ...) as its Airflow
hostname. The address is what makes its task logs readable from the UI: Airflow 3.3 fetches a
worker's log from http://{ti.hostname}:{[logging] worker_log_server_port}/log/..., with the
*API server's* port setting, one for all workers (FileTaskHandler._get_log_retrieval_url), and
Airflow's own worker log server binds every interface, so two cannot share a port. Workers
therefore run with --skip-serve-logs, and each gets the same log server app bound to its own
address only, all on one port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from devstack.postgres import REPO
from devstack.processes import StackError

if TYPE_CHECKING:
    from celery.app.control import Control

EXECUTOR = "CeleryExecutor"
# An unacknowledged task is redelivered to another worker after this long. Airflow's Celery app
# acknowledges late, so it must exceed the longest training task, or that task runs twice.
# A killed worker's task is never acknowledged either: it waits in Redis for this long, while the
# scheduler's retry runs it again much sooner (TASK_HEARTBEAT_TIMEOUT), as a new try with a new
# task instance id, so a late redelivery of the old try could not start it a second time.
VISIBILITY_TIMEOUT = 6 * 3600
# A task whose heartbeats stop (its worker or runner died) is failed, and retried, after this
# long, not after Airflow's 300 s. The task supervisor beats every [workers] min_heartbeat_interval
# (5 s), so a healthy task would have to miss about six beats in a row to be taken for dead.
TASK_HEARTBEAT_TIMEOUT = 30
# How often the scheduler looks for such tasks (Airflow's default: 10 s).
HEARTBEAT_TIMEOUT_CHECK_INTERVAL = 5
# One task at a time per worker: a training task keeps a core busy; scale with workers instead.
WORKER_CONCURRENCY = 1
# And a worker takes a task from the broker only while its process is free (Celery 5.6, Redis
# only). Without it a busy worker may still reserve the next task while another worker sits
# idle: the tuning test once saw all four trials of a study run on one worker of two.
WORKER_CELERY_CONFIG = {"worker_disable_prefetch": True}
# Where a worker's hostname callable finds the loopback address its log server listens on.
ADDRESS_VARIABLE = "RLOPS_WORKER_ADDRESS"
MAX_WORKERS = 32
# One value for every Airflow process of a deployment; a worker is checked against the API
# server before it starts. A task token signed with another JWT secret is refused by the
# execution API ("Signature verification failed", apache/airflow#62026); a log request signed
# with another API secret key by a worker's log server; connections encrypted with another
# fernet key cannot be read; another execution API URL sends tasks elsewhere (#49931).
SHARED_WITH_API_SERVER = (
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
)

# Loopback only, with a password like the databases; no RDB snapshots, no append-only file: a
# broker that forgets its queue when it stops, as the stack's S3 forgets its objects.
REDIS_CONFIG = """bind 127.0.0.1
port {port}
protected-mode yes
requirepass {password}
save ""
appendonly no
dir {root}
daemonize no
logfile ""
"""


def worker_address() -> str:
    """[core] hostname_callable on a devstack worker: the address its log server listens on."""
    return os.environ[ADDRESS_VARIABLE]


def celery_settings(*, broker_url: str, result_backend: str, log_port: int) -> dict[str, str]:
    """Airflow configuration every process of a Celery stack shares (scheduler, API, workers)."""
    return {
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps(WORKER_CELERY_CONFIG),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        # The API server builds every worker's log URL with this one port (see the docstring).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
    }


class Redis:
    """A throwaway Redis on 127.0.0.1 under `root`: password-protected, nothing persisted."""

    def __init__(self, root: Path, port: int, password: str) -> None:
        self.root = root
        self.port = port
        self.password = password
        self.config = root / "redis.conf"

    @property
    def url(self) -> str:
        """Broker URL, database 0."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The server command line; the password stays in the config file (mode 0600)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server not found: install it (bash scripts/system-deps.sh)")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config.touch(mode=0o600)
        self.config.write_text(
            REDIS_CONFIG.format(port=self.port, password=self.password, root=self.root)
        )
        return [binary, str(self.config)]

    def is_ready(self) -> bool:
        """Redis answers PING with our password."""
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


@dataclass(frozen=True)
class Worker:
    """One Celery worker; everything it writes is under `root`, as if on a disk of its own."""

    number: int  # 1..N
    root: Path

    @property
    def name(self) -> str:
        """Its service name in the state file and the log folder."""
        return f"airflow-worker-{self.number}"

    @property
    def log_server_name(self) -> str:
        return f"{self.name}-logs"

    @property
    def address(self) -> str:
        """Its own loopback address: its Airflow hostname and where its log server listens."""
        return f"127.0.0.{self.number + 1}"

    @property
    def celery_hostname(self) -> str:
        """Unique per worker: Celery refuses a second worker with the same node name."""
        return f"worker{self.number}@{socket.gethostname()}"

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def dags(self) -> Path:
        return self.root / "dags"

    def prepare(self) -> None:
        """Its own AIRFLOW_HOME, TMPDIR and copy of the repository's DAG files."""
        self.home.mkdir(parents=True)
        self.tmp.mkdir(mode=0o700)
        shutil.copytree(REPO / "dags", self.dags, ignore=shutil.ignore_patterns("__pycache__"))

    def env(self, task_env: dict[str, str]) -> dict[str, str]:
        """The stack's task environment (secrets, URLs, Celery settings) on this worker's disk."""
        return task_env | {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "TMPDIR": str(self.tmp),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.{worker_address.__name__}",
            ADDRESS_VARIABLE: self.address,
            "PYTHONPATH": str(REPO),  # devstack is no installed package: the callable's module
        }

    def argv(self) -> list[str]:
        """`airflow celery worker`; its built-in log server would bind every interface."""
        return [
            *(sys.executable, "-m", "airflow", "celery", "worker"),
            *("--celery-hostname", self.celery_hostname, "--skip-serve-logs"),
        ]

    def log_server_argv(self, port: int) -> list[str]:
        """Airflow's worker log server app, on this worker's address only (run with env())."""
        return [
            *(sys.executable, "-m", "uvicorn", "--factory"),
            "airflow.utils.serve_logs.log_server:get_app",
            *("--host", self.address, "--port", str(port), "--no-access-log"),
        ]


@contextmanager
def _remote_control(broker_url: str) -> Iterator[Control]:
    """Celery's remote control of the workers listening on the broker."""
    from celery import Celery  # only a Celery stack needs it

    app = Celery(broker=broker_url)
    try:
        yield app.control
    finally:
        app.close()


def answering_workers(broker_url: str) -> set[str]:
    """Node names of the Celery workers that answer a ping through the broker within 1 s."""
    with _remote_control(broker_url) as control:
        replies = control.ping(timeout=1.0)
    return {name for reply in replies for name in reply}


def worker_settings(broker_url: str) -> dict[str, dict[str, object]]:
    """The Celery settings each answering worker runs with, beyond Celery's defaults."""
    with _remote_control(broker_url) as control:
        return control.inspect(timeout=5.0).conf(with_defaults=False) or {}


def check_shared_settings(
    worker: str, env: Mapping[str, str], api_server: Mapping[str, str]
) -> None:
    """Refuse a worker environment that differs from the API server's in SHARED_WITH_API_SERVER.

    Unset counts as different: the worker would fall back to a default, or to a secret generated
    in its own AIRFLOW_HOME. The error names the variables, never their values (it ends up in
    logs and tracebacks).
    """
    differing = [
        key for key in SHARED_WITH_API_SERVER if not env.get(key) or env[key] != api_server.get(key)
    ]
    if differing:
        raise StackError(
            f"{worker} would not share {', '.join(differing)} with the API server: "
            "its tasks would fail (e.g. 'Invalid auth token: Signature verification failed')"
        )


def check_hostnames_free(hostnames: Sequence[str], broker_url: str) -> None:
    """Refuse Celery hostnames given twice, or already answering a ping through the broker.

    Celery only warns (DuplicateNodenameWarning) about a second worker under a name in use:
    both consume, and replies to ping, inspect and shutdown get mixed up. Airflow's own check
    in `airflow celery worker` matches node names ending in "@<--celery-hostname>", so a full
    "name@host", as devstack gives, never matches.
    """
    twice = sorted({name for name in hostnames if hostnames.count(name) > 1})
    if twice:
        raise StackError(f"Celery hostname given to more than one worker: {', '.join(twice)}")
    taken = sorted(set(hostnames) & answering_workers(broker_url))
    if taken:
        raise StackError(
            f"a live Celery worker already answers as {', '.join(taken)}: stop it first, "
            "or start this one under another hostname"
        )
