"""The stack: one Postgres (Airflow's, MLflow's and Optuna's databases, and MLflow's users), S3
(moto), an MLflow server with its basic-auth app, the policy server (devstack.serving),
Airflow's services.

The same topology as docker-compose.yaml, as plain processes on 127.0.0.1 with free ports;
with the CeleryExecutor, also its `celery` profile: Redis and Celery workers (devstack.celery).
Everything but Postgres is in memory or thrown away: moto keeps S3 objects in RAM, so the
Postgres cluster is recreated by every `up` to keep MLflow's rows and artifacts consistent.
"""

from __future__ import annotations

import base64
import configparser
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import boto3
import httpx
from pydantic import BaseModel, Field, PrivateAttr

from devstack.celery import (
    HEARTBEAT_TIMEOUT_CHECK_INTERVAL,
    MAX_WORKERS,
    TASK_HEARTBEAT_TIMEOUT,
    Redis,
    Worker,
    answering_workers,
    celery_settings,
    check_hostnames_free,
    check_shared_settings,
)
from devstack.postgres import APP_DATABASES, REPO, PostgresCluster
from devstack.processes import (
    ProcessRef,
    StackError,
    free_port,
    http_ok,
    listening,
    log_tail,
    ref_of,
    spawn,
    stop_groups,
    wait_until,
)
from devstack.serving import ServingKeys
from rlops_registry.access import AIRFLOW, POLICY_SERVER, USERS, client_env, password_env

STATE_FILE = "state.json"
SERVING = "policy-server"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor")
KEEPALIVE = Path(__file__).with_name("keepalive.py")
"""Run as a script (it imports only the standard library): the services' cwd need not hold
devstack."""
Database = Literal["postgres", "airflow", "mlflow", "optuna"]
Executor = Literal["LocalExecutor", "CeleryExecutor"]
OPTUNA_STORAGE_ENV = "RLOPS_OPTUNA_STORAGE"
"""Where the tuning DAG's tasks find the Optuna database (rlops_airflow.tuning reads it)."""
AIRFLOW_ROLES = {"operator": "op", "viewer": "viewer"}
"""Airflow users beside the admin, and their SimpleAuthManager role (as in compose)."""
CELERY_PARALLELISM = 16  # Airflow's default [core] max_active_tasks_per_dag
MLFLOW_AUTH_CONFIG = REPO / "docker" / "mlflow" / "basic_auth.ini"
"""compose's basic-auth settings; devstack only points `database_uri` at its own Postgres."""
MLFLOW_ADMIN = "admin"
ORPHANED_TASKS_CHECK_INTERVAL = 30


def _secret() -> str:
    """URL-safe, so it can sit in a connection URL without quoting."""
    return secrets.token_urlsafe(24)


class Stack(BaseModel):
    """A running stack, as recorded in `<state_dir>/state.json` (PIDs, ports, credentials)."""

    state_dir: Path
    postgres_port: int = Field(default_factory=free_port)
    # One login role per database, as in the compose file's init script; `postgres` is superuser.
    db_passwords: dict[str, str] = Field(
        default_factory=lambda: {db: _secret() for db in ("postgres", *APP_DATABASES)}
    )
    s3_port: int = Field(default_factory=free_port)
    s3_access_key: str = Field(default_factory=lambda: secrets.token_hex(10).upper())
    s3_secret_key: str = Field(default_factory=_secret)
    bucket: str = "rlops-mlflow"
    mlflow_port: int = Field(default_factory=free_port)
    # MLflow's basic-auth app: its admin, the flask secret, and one password per rlops user.
    mlflow_admin_password: str = Field(default_factory=_secret)
    mlflow_secret_key: str = Field(default_factory=_secret)
    mlflow_passwords: dict[str, str] = Field(
        default_factory=lambda: {user.name: _secret() for user in USERS}
    )
    # The policy server (needs only MLflow, so it runs with or without Airflow): its tokens.
    serving_port: int = Field(default_factory=free_port)
    serving_keys: ServingKeys = Field(default_factory=ServingKeys)
    airflow_port: int | None = None
    airflow_username: str = "admin"
    airflow_password: str = Field(default_factory=_secret)
    # SimpleAuthManager's roles beyond the admin: an operator may trigger, a viewer may not.
    airflow_passwords: dict[str, str] = Field(
        default_factory=lambda: {user: _secret() for user in AIRFLOW_ROLES}
    )
    # Shared by every Airflow process: the scheduler signs task tokens the API server checks.
    airflow_jwt_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(64))
    airflow_api_secret_key: str = Field(default_factory=_secret)
    airflow_fernet_key: str = Field(
        default_factory=lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
    )
    executor: Executor = "LocalExecutor"
    # CeleryExecutor only: how many workers, the broker, and the one port of their log servers.
    workers: int = Field(default=0, ge=0, le=MAX_WORKERS)
    redis_port: int = Field(default_factory=free_port)
    redis_password: str = Field(default_factory=_secret)
    worker_log_port: int = Field(default_factory=free_port)
    # Where the LocalExecutor's tasks write their temporary files (checkpoints on their way to
    # the artifact store): the scheduler's TMPDIR. None: the system's. Celery workers have a
    # TMPDIR of their own (devstack.celery). The fault tests mount a small disk there.
    task_tmpdir: Path | None = None
    processes: dict[str, ProcessRef] = Field(default_factory=dict)
    _popen: dict[str, subprocess.Popen[bytes]] = PrivateAttr(default_factory=dict)

    # -- where things are ---------------------------------------------------------------------

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def serving_url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    @property
    def airflow_url(self) -> str:
        if self.airflow_port is None:
            raise StackError("this stack was started without Airflow")
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def postgres(self) -> PostgresCluster:
        return PostgresCluster(
            self.state_dir / "postgres", self.postgres_port, self.db_passwords["postgres"]
        )

    def postgres_dsn(self, db: Database, driver: str = "postgresql") -> str:
        """Connection URL for `db`, logged in as the role that owns it (`postgres` is superuser)."""
        return f"{driver}://{db}:{self.db_passwords[db]}@127.0.0.1:{self.postgres_port}/{db}"

    def log(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"

    @property
    def redis(self) -> Redis:
        return Redis(self.state_dir / "redis", self.redis_port, self.redis_password)

    @property
    def celery_workers(self) -> list[Worker]:
        """The Celery workers, none under the LocalExecutor."""
        root = self.state_dir / "workers"
        return [Worker(number, root / f"worker{number}") for number in range(1, self.workers + 1)]

    def s3_client(self) -> Any:  # botocore generates the client class at run time
        """boto3 S3 client on the moto endpoint, with the stack's keys."""
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.s3_access_key,
            aws_secret_access_key=self.s3_secret_key,
            region_name="us-east-1",
        )

    # -- environments -------------------------------------------------------------------------

    @staticmethod
    def _base_env() -> dict[str, str]:
        """A clean environment: nothing from the caller's MLFLOW_*, AIRFLOW_*, AWS_* leaks in;
        the caller's OpenMP tuning does (the tests lower GOMP_SPINCOUNT: tests/conftest.py)."""
        kept = ("HOME", "LANG", "LC_ALL", "TZ", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")
        env = {k: os.environ[k] for k in kept if k in os.environ}
        path = os.environ.get("PATH", os.defpath)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        env["DO_NOT_TRACK"] = "true"
        return env

    def mlflow_env(self) -> dict[str, str]:
        """The MLflow server's env: the only place with S3 credentials (clients go through it)."""
        return self._base_env() | {
            "PGPASSWORD": self.db_passwords["mlflow"],  # keeps the password off the command line
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # The GenAI job runner costs ~2 GB and 10 s of start-up; the pipeline does not use it.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_AUTH_CONFIG_PATH": str(self.state_dir / "mlflow" / "basic_auth.ini"),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self.mlflow_secret_key,
        }

    def _write_mlflow_auth_config(self) -> None:
        """compose's basic_auth.ini, with the users kept in this stack's `mlflow_auth` database
        (no password in it: psycopg2 reads PGPASSWORD, as for the tracking store)."""
        config = configparser.ConfigParser()
        config.read(MLFLOW_AUTH_CONFIG)
        port = self.postgres_port
        config["mlflow"]["database_uri"] = (
            f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow_auth"
        )
        folder = self.state_dir / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "basic_auth.ini").open("w") as file:
            config.write(file)

    def _set_up_mlflow_users(self) -> None:
        """The shared setup (rlops_registry.access), run as MLflow's admin, as compose runs it."""
        env = self._base_env() | self.mlflow_client_env(MLFLOW_ADMIN)
        env |= {password_env(user): self.mlflow_passwords[user.name] for user in USERS}
        self._run_once(
            "mlflow-users", "MLflow users setup", ["rlops_registry.access", "setup"], env
        )

    def mlflow_client_env(self, user: str = AIRFLOW.name) -> dict[str, str]:
        """MLFLOW_TRACKING_URI/USERNAME/PASSWORD of one MLflow user (`admin` or an rlops user)."""
        if user == MLFLOW_ADMIN:
            password = self.mlflow_admin_password
        elif user in self.mlflow_passwords:
            password = self.mlflow_passwords[user]
        else:
            known = [MLFLOW_ADMIN, *self.mlflow_passwords]
            raise StackError(f"no MLflow user {user!r}: one of {', '.join(known)}")
        return client_env(self.mlflow_uri, user, password)

    def serving_env(self) -> dict[str, str]:
        """The policy server's: MLflow's `policy-server` login, the keys' hashes, no token."""
        return (
            self._base_env()
            | self.mlflow_client_env(POLICY_SERVER.name)
            | self.serving_keys.server_env(self.serving_port)
        )

    def airflow_env(self) -> dict[str, str]:
        """Environment of every Airflow process; also right for `airflow` CLI calls on the stack."""
        home = self.state_dir / "airflow"
        url = self.airflow_url
        env = self._base_env() | {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres_dsn(
                "airflow", "postgresql+psycopg2"
            ),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Unpausing is an explicit act (UI, REST): a cron DAG created unpaused would start
            # its latest missed tick at once.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # LocalExecutor forks `parallelism` workers at start: 32 by default, 2 suit 2 cores.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__FERNET_KEY": self.airflow_fernet_key,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                [f"{self.airflow_username}:admin", *(f"{u}:{r}" for u, r in AIRFLOW_ROLES.items())]
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # An edited DAG file is re-serialized at once, and new files show up within 10 s.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.airflow_port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__SECRET_KEY": self.airflow_api_secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": self.airflow_jwt_secret,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            # Task tokens outlive a long training task (default 600 s); tasks also resume.
            "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "3600",
            # A task whose runner died is failed and retried after half a minute of silence,
            # not five (devstack.celery). The scheduler judges by it, task supervisors pace
            # their heartbeats by it: every process, on either executor, shares it.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
                HEARTBEAT_TIMEOUT_CHECK_INTERVAL
            ),
            # A scheduler judges only the tasks it queued: those of a killed one wait for its
            # successor to adopt them (LocalExecutor: reset them, to run again), which it does
            # at start and then at this interval, once the dead one's heartbeat is older than
            # [scheduler] scheduler_health_check_threshold (30 s). Airflow's default: 300 s.
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_INTERVAL),
        }
        if self.executor == "CeleryExecutor":
            env |= celery_settings(
                broker_url=self.redis.url,
                result_backend=self.postgres_dsn("airflow", "db+postgresql+psycopg2"),
                log_port=self.worker_log_port,
            )
            # Nothing to fork here: the workers' slots bound what runs. Queued tasks wait in
            # Redis for the first free worker rather than for the scheduler's next loop.
            env["AIRFLOW__CORE__PARALLELISM"] = str(CELERY_PARALLELISM)
        return env

    def task_env(self) -> dict[str, str]:
        """Where tasks run (the scheduler under the LocalExecutor): they also need MLflow and
        the Optuna database, and their own TMPDIR when the stack has one."""
        env = (
            self.airflow_env()
            | self.mlflow_client_env(AIRFLOW.name)
            | {
                OPTUNA_STORAGE_ENV: self.postgres_dsn("optuna", "postgresql+psycopg2"),
            }
        )
        if self.task_tmpdir is not None:
            env["TMPDIR"] = str(self.task_tmpdir)
        return env

    def worker_envs(self) -> dict[str, dict[str, str]]:
        """Each Celery worker's environment, by service name."""
        return {worker.name: worker.env(self.task_env()) for worker in self.celery_workers}

    # -- lifecycle ----------------------------------------------------------------------------

    @classmethod
    def load(cls, state_dir: Path) -> Stack:
        """The stack recorded in state_dir (raises FileNotFoundError when there is none)."""
        return cls.model_validate_json((state_dir / STATE_FILE).read_text())

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        with_airflow: bool = True,
        executor: Executor = "LocalExecutor",
        workers: int = 0,
        task_tmpdir: Path | None = None,
    ) -> Stack:
        """Start every service, wait until each answers, and record the stack in state_dir.

        With the CeleryExecutor, `workers` (at least one) Celery workers and their Redis too.
        With `task_tmpdir` (an existing folder), LocalExecutor tasks keep their temporary files
        there.
        Leftovers of an earlier stack in state_dir are deleted; a running one is an error.
        On any failure, whatever was already started is stopped again.
        """
        if (executor == "CeleryExecutor") != (workers > 0) or (workers and not with_airflow):
            raise StackError(
                f"{executor} with {workers} workers, Airflow {with_airflow}: Celery workers need "
                "Airflow on the CeleryExecutor, which needs at least one worker"
            )
        state_dir = state_dir.resolve()
        try:
            if cls.load(state_dir).running():
                raise StackError(f"a stack is already running from {state_dir}: stop it first")
        except FileNotFoundError:
            pass
        for leftover in ("postgres", "mlflow", "airflow", "logs", "redis", "workers"):
            shutil.rmtree(state_dir / leftover, ignore_errors=True)
        stack = cls(
            state_dir=state_dir,
            airflow_port=free_port() if with_airflow else None,
            executor=executor,
            workers=workers,
            task_tmpdir=task_tmpdir,
        )
        try:
            stack._start_services()
        except BaseException:
            stack.stop()
            raise
        return stack

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        path.touch(mode=0o600)  # it holds credentials
        path.write_text(self.model_dump_json(indent=2))

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start a service; an Airflow one under devstack.keepalive, which starts it again when
        it exits on its own (as compose's restart policy does: Airflow's services exit when
        their database restarts)."""
        if name in AIRFLOW_SERVICES:
            argv = [sys.executable, str(KEEPALIVE), name, "--", *argv]
        proc = spawn(argv, env, self.log(name))
        self._popen[name] = proc
        self.processes[name] = ref_of(proc)
        self._save()

    def _wait(
        self, what: str, ready: Callable[[], bool], *names: str, timeout: float = 120.0
    ) -> None:
        wait_until(
            ready,
            what=what,
            procs={name: self._popen[name] for name in names},
            logs={name: self.log(name) for name in names},
            timeout=timeout,
        )

    def _commands(self) -> dict[str, tuple[list[str], dict[str, str]]]:
        """argv and env of each service `up` spawns beside Postgres, Redis and Celery's: the
        same for a first start and a restart (Stack.restart)."""
        python = sys.executable
        backend = f"postgresql+psycopg2://mlflow@127.0.0.1:{self.postgres_port}/mlflow"
        commands = {
            "s3": (
                [python, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(self.s3_port)],
                self._base_env(),
            ),
            "mlflow": (
                [
                    *(python, "-m", "mlflow", "server", "--app-name", "basic-auth"),
                    *("--host", "127.0.0.1", "--port", str(self.mlflow_port)),
                    *("--backend-store-uri", backend),
                    *("--artifacts-destination", f"s3://{self.bucket}/", "--serve-artifacts"),
                    *("--workers", "1"),
                ],
                self.mlflow_env(),
            ),
            SERVING: ([python, "-m", "rlops_serving"], self.serving_env()),
        }
        if self.airflow_port is not None:
            airflow = [python, "-m", "airflow"]
            env = self.airflow_env()
            commands["airflow-apiserver"] = ([*airflow, "api-server"], env)
            # --skip-serve-logs: its log server would listen on every interface; the API
            # server reads the task logs from the shared AIRFLOW_HOME instead.
            scheduler = [*airflow, "scheduler", "--skip-serve-logs"]
            commands["airflow-scheduler"] = (scheduler, self.task_env())
            commands["airflow-dag-processor"] = ([*airflow, "dag-processor"], env)
        return commands

    def _start_services(self) -> None:
        self._save()  # from here on, `down` can clean up after a failed `up`
        postgres = self.postgres
        postgres.init()
        postgres.start()
        postgres.create_app_databases(self.db_passwords)
        commands = self._commands()
        self._spawn("s3", *commands["s3"])
        self._write_mlflow_auth_config()
        self._spawn("mlflow", *commands["mlflow"])
        if self.workers:
            self._spawn("redis", self.redis.argv(), self._base_env())
        if self.airflow_port is not None:
            self._migrate_airflow()  # meanwhile MLflow migrates its own database
            for service in AIRFLOW_SERVICES:
                self._spawn(service, *commands[service])
            self._start_workers()
        self._wait("S3", lambda: http_ok(f"{self.s3_endpoint}/moto-api/"), "s3")
        self.s3_client().create_bucket(Bucket=self.bucket)  # moto starts empty every time
        self._wait("MLflow", lambda: http_ok(f"{self.mlflow_uri}/health"), "mlflow")
        # It loads (a few seconds) while MLflow's users are set up: asking for the champion
        # before its user exists is refused (logged once); it asks again every poll.
        self._spawn(SERVING, *commands[SERVING])
        self._set_up_mlflow_users()
        if self.airflow_port is not None:
            self._wait("Airflow", self._airflow_healthy, *AIRFLOW_SERVICES)
        if self.workers:
            self._wait_for_workers()
        self._wait("the policy server", lambda: http_ok(f"{self.serving_url}/health"), SERVING)

    def restart(self, service: str, *, kill: bool = False) -> None:
        """Stop one service and start it again on the same port, data and settings; return once
        it answers (an Airflow service: once it heartbeats again).

        `kill` crashes it (SIGKILL to its process groups, as a dead machine; Postgres: an
        immediate shutdown), else it stops cleanly (SIGTERM; Postgres: a fast shutdown).
        S3 is not restartable: moto keeps its objects in RAM, a restart would lose them all.
        """
        commands = self._commands()
        restartable = ["postgres", *(name for name in commands if name != "s3")]
        if service not in restartable:
            raise StackError(f"cannot restart {service!r}: one of {', '.join(restartable)}")
        if service == "postgres":
            self.postgres.stop(mode="immediate" if kill else "fast")
            self.postgres.start()
            return
        ref = self.processes[service]
        if kill:
            ref.kill()
        else:
            stop_groups([ref])
        if (old := self._popen.pop(service, None)) is not None:
            old.wait()  # reap it
        since = datetime.now(UTC)
        self._spawn(service, *commands[service])
        if service in AIRFLOW_SERVICES:
            # The API server has no heartbeat: it is back once it reports the others healthy.
            fresh = None if service == "airflow-apiserver" else since
            self._wait(service, lambda: self._airflow_healthy(fresh), service)
        else:
            url = f"{self.serving_url if service == SERVING else self.mlflow_uri}/health"
            self._wait(service, lambda: http_ok(url), service)

    def _start_workers(self) -> None:
        """Each Celery worker and its log server, once Redis answers (workers ask it at start).

        None starts if one would not share the API server's secrets and execution API, or if a
        Celery hostname is given twice or already answers through the broker.
        """
        if not self.workers:
            return
        self._wait("Redis", self.redis.is_ready, "redis", timeout=30)
        envs = self.worker_envs()
        api_server = self.airflow_env()
        for name, env in envs.items():
            check_shared_settings(name, env, api_server)
        check_hostnames_free([w.celery_hostname for w in self.celery_workers], self.redis.url)
        for worker in self.celery_workers:
            worker.prepare()
            env = envs[worker.name]
            self._spawn(worker.name, worker.argv(), env)
            self._spawn(worker.log_server_name, worker.log_server_argv(self.worker_log_port), env)

    def _wait_for_workers(self) -> None:
        """Every worker consumes from the broker, and every log server accepts connections."""
        workers = self.celery_workers
        for worker in workers:
            self._wait(
                f"{worker.name} log server",
                lambda w=worker: listening(w.address, self.worker_log_port),
                worker.log_server_name,
            )
        names = {worker.celery_hostname for worker in workers}
        self._wait(
            "Celery workers",
            lambda: names <= answering_workers(self.redis.url),
            *(worker.name for worker in workers),
        )

    def _migrate_airflow(self) -> None:
        """Schema migration, and a fixed admin password instead of a generated one."""
        home = self.state_dir / "airflow"
        home.mkdir(parents=True)
        passwords = home / "passwords.json"
        passwords.touch(mode=0o600)
        users = {self.airflow_username: self.airflow_password} | self.airflow_passwords
        passwords.write_text(json.dumps(users))
        migrate = ["airflow", "db", "migrate"]
        self._run_once("airflow-migrate", "airflow db migrate", migrate, self.airflow_env())

    def _run_once(self, name: str, what: str, module_argv: list[str], env: dict[str, str]) -> None:
        """`python -m <module_argv>` to completion, logged as `name`; a failure stops `up`
        with the log's tail."""
        log = self.log(name)
        with log.open("ab") as out:
            done = subprocess.run(
                [sys.executable, "-m", *module_argv],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        if done.returncode != 0:
            raise StackError(f"{what} failed ({done.returncode})\n{log_tail(log)}")

    def _airflow_healthy(self, since: datetime | None = None) -> bool:
        """The API server answers, and reports the scheduler and DAG processor heartbeating
        (after `since`, when given: a restarted one, not its predecessor's last beat)."""
        url = f"{self.airflow_url}/api/v2/monitor/health"
        try:
            health = httpx.get(url, timeout=2.0, trust_env=False).json()
        except (httpx.TransportError, json.JSONDecodeError):
            return False
        parts = {"metadatabase": None, "scheduler": "scheduler", "dag_processor": "dag_processor"}
        for part, beat in parts.items():
            status = health.get(part) or {}
            if status.get("status") != "healthy":
                return False
            latest = status.get(f"latest_{beat}_heartbeat") if beat else None
            if (
                since is not None
                and beat
                and (latest is None or datetime.fromisoformat(latest) < since)
            ):
                return False
        return True

    def service_states(self) -> dict[str, bool]:
        """Each recorded service (and Postgres): is it running?"""
        states = {name: bool(ref.members()) for name, ref in self.processes.items()}
        return {"postgres": self.postgres.is_ready(), **states}

    def running(self) -> bool:
        """Anything of this stack still alive (a cluster whose pid file remains counts)."""
        alive = any(ref.members() for ref in self.processes.values())
        return alive or self.postgres.pid() is not None

    def stop(self) -> None:
        """Stop every service (as process groups), then Postgres; forget the stack."""
        stop_groups(self.processes.values())
        for proc in self._popen.values():
            proc.wait()  # reap our children: the grace period already saw them exit
        self.postgres.stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
