"""`python -m devstack up|down|status`: the compose topology as local processes, for people."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devstack.celery import MAX_WORKERS
from devstack.postgres import APP_DATABASES, REPO
from devstack.processes import StackError
from devstack.serving import CLIENT_KEY, KEY_SCOPES, METRICS_KEY, MODEL_NAME
from devstack.stack import Executor, Stack

EXECUTORS: dict[str, Executor] = {"local": "LocalExecutor", "celery": "CeleryExecutor"}


def _up(state_dir: Path, with_airflow: bool, executor: Executor, workers: int) -> int:
    began = time.monotonic()
    stack = Stack.start(state_dir, with_airflow=with_airflow, executor=executor, workers=workers)
    print(f"stack up in {time.monotonic() - began:.1f} s (state: {state_dir / 'state.json'})")
    _describe(stack)
    return 0


def _recorded(state_dir: Path) -> Stack | None:
    """The stack recorded in state_dir; None, said on stdout, when there is none."""
    try:
        return Stack.load(state_dir)
    except FileNotFoundError:
        print(f"no stack recorded in {state_dir}")
        return None


def _down(state_dir: Path) -> int:
    if (stack := _recorded(state_dir)) is None:
        return 0
    stack.stop()
    print("stack stopped")
    return 0


def _status(state_dir: Path) -> int:
    if (stack := _recorded(state_dir)) is None:
        return 1
    states = stack.service_states()
    for name, running in states.items():
        ref = stack.processes.get(name)
        pid = ref.pid if ref else stack.postgres.pid()
        print(f"{name:<24}{'running' if running else 'STOPPED':<10}pid {pid}")
    _describe(stack)
    return 0 if all(states.values()) else 1


def _describe(stack: Stack) -> None:
    print(f"MLflow     {stack.mlflow_uri}   (export MLFLOW_TRACKING_URI={stack.mlflow_uri})")
    for user in ("admin", *stack.mlflow_passwords):
        password = stack.mlflow_client_env(user)["MLFLOW_TRACKING_PASSWORD"]
        print(f"           user {user:<14} password {password}")
    _describe_serving(stack)
    if stack.airflow_port is not None:
        print(f"Airflow    {stack.airflow_url}   user {stack.airflow_username}")
        print(f"           password {stack.airflow_password}")
        for user, password in stack.airflow_passwords.items():
            print(f"           user {user:<14} password {password}")
    print(f"S3 (moto)  {stack.s3_endpoint}   bucket {stack.bucket}")
    if stack.workers:
        print(f"Redis      127.0.0.1:{stack.redis_port}   (password in state.json)")
    for worker in stack.celery_workers:
        print(
            f"Celery     {worker.celery_hostname}   hostname {worker.address}, "
            f"logs http://{worker.address}:{stack.worker_log_port}, disk {worker.root}"
        )
    for db in APP_DATABASES:
        print(f"Postgres   {stack.postgres_dsn(db)}")
    print(f"logs       {stack.state_dir / 'logs'}")


def _describe_serving(stack: Stack) -> None:
    """Where the policy server is, its tokens, and a first request with the client's."""
    keys = stack.serving_keys
    url = stack.serving_url
    print(f"Serving    {url}   {MODEL_NAME}@champion, as MLflow user policy-server")
    for key_id, token in ((CLIENT_KEY, keys.client_token), (METRICS_KEY, keys.metrics_token)):
        scopes = ", ".join(KEY_SCOPES[key_id])
        print(f"           token ({scopes}) {token}")
    print(
        f"           e.g. curl -H 'Authorization: Bearer {keys.client_token}' "
        f"""-H 'Content-Type: application/json' -d '{{"observation": [1, 0, 0], """
        f""""start_episode": true}}' {url}/v1/act"""
    )
    print("           (503 until a version is champion; report episodes with its ticket)")


def _workers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """How many Celery workers `up` asks for: 2 by default, none without the CeleryExecutor."""
    celery = args.executor == "celery"
    if args.workers is not None and not celery:
        parser.error("--workers needs --executor celery")
    if celery and args.no_airflow:
        parser.error("--executor celery needs Airflow")
    return (args.workers or 2) if celery else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=REPO / ".local" / "devstack",
        help="PIDs, ports, credentials, logs and data (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start Postgres, S3, MLflow, the policy server, Airflow; wait until ready"
    )
    up.add_argument(
        "--no-airflow", action="store_true", help="only Postgres, S3, MLflow and the policy server"
    )
    up.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="Airflow's executor; celery adds Redis and Celery workers (default: %(default)s)",
    )
    up.add_argument(
        "--workers",
        type=int,
        choices=range(1, MAX_WORKERS + 1),
        metavar=f"1..{MAX_WORKERS}",
        help="Celery workers, each on a disk of its own (--executor celery; default 2)",
    )
    commands.add_parser("down", help="stop every process of the stack")
    commands.add_parser("status", help="which services run, and where (exit 1 if any is down)")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    try:
        if args.command == "up":
            workers = _workers(parser, args)
            return _up(state_dir, not args.no_airflow, EXECUTORS[args.executor], workers)
        if args.command == "down":
            return _down(state_dir)
        return _status(state_dir)
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
