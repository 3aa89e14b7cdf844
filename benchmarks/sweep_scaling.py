"""Wall time of one fixed 4-candidate seed sweep on 1, 2 and 4 Celery workers and the LocalExecutor.

    .venv/bin/python -m benchmarks.sweep_scaling                   # the measurement
    .venv/bin/python -m benchmarks.sweep_scaling --workers 1 --no-local --steps 1000  # smoke

Run it from the repository root (`-m`: devstack is a folder of the checkout, not a package).
Each configuration gets a fresh devstack (Postgres, S3, MLflow, Airflow and, on Celery, Redis
and the workers) in a temporary folder, stopped and deleted afterwards, so no run sees another's
leftovers. The sweep is the pipeline DAG's, triggered through the REST API as the UI does: 4
seeds, one torch thread per task, `--steps` env steps each (64x64 nets, batch 64; about 400
steps/s on one idle core), 3 eval episodes, no GIF, a gate that lets everything through.

Times come from Airflow's own records, not this script's clock: the DAG run's start to end,
and the `train` tasks' span (first start to last end). The speedups are over one Celery worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from devstack import Stack, StackError
from devstack.airflow_api import AirflowApi
from devstack.celery import MAX_WORKERS, WORKER_CONCURRENCY
from devstack.scratch import temporary_stack
from rl_core.common import cpu

DAG_ID = "rlops_sac_pipeline"
SEEDS = 4


class SweepFailed(RuntimeError):
    """The stack answered, but not as a working pipeline does."""


def sweep_conf(steps: int) -> dict[str, Any]:
    """The same sweep for every configuration; only the executor and its workers change."""
    return {
        "total_timesteps": steps,
        "n_seeds": SEEDS,
        "checkpoint_every": 0,
        "eval_episodes": 3,
        "record_video": False,
        "sac_overrides": {"hidden_sizes": [64, 64], "batch_size": 64, "torch_threads": 1},
        "min_reward": -100_000,
        "min_speedup": 0,
        "registered_model_name": "rlops-sweep-scaling",
    }


@dataclass(frozen=True)
class Setup:
    """One configuration to measure: an executor, and its number of Celery workers."""

    workers: int  # 0: the LocalExecutor

    @property
    def label(self) -> str:
        if not self.workers:
            return "LocalExecutor"
        return f"Celery, {self.workers} worker{'s' * (self.workers > 1)}"


@dataclass(frozen=True)
class Result:
    setup: Setup
    slots: int  # tasks the executor runs at once
    wall: float  # seconds, DAG run start to end
    train_span: float  # seconds, first train start to last train end
    train_mean: float  # seconds, one train task on average
    trains_by_host: dict[str, int]
    retried: int  # train tasks that needed more than one try


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _when(record: dict[str, Any], field: str) -> datetime:
    """A start_date or end_date of a REST record (ISO 8601, UTC)."""
    return datetime.fromisoformat(record[field])


def say(message: str) -> None:
    """A progress line with the clock time: a configuration takes minutes."""
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


def train_instances(api: AirflowApi, run_id: str) -> list[dict[str, Any]]:
    """The run's `train` task instances (none before sweep_seeds has expanded them)."""
    return [ti for ti in api.task_instances(run_id) if ti["task_id"] == "train"]


def trainings_progress(api: AirflowApi) -> Callable[[dict[str, Any]], None]:
    """At every poll of the run, say its state and its trainings' whenever they move on."""
    said = ""

    def progress(run: dict[str, Any]) -> None:
        nonlocal said
        trains = train_instances(api, run["dag_run_id"])
        states = Counter(ti["state"] or "unmapped" for ti in trains)
        now = f"run {run['state']}; train: " + (
            ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "not yet"
        )
        if now != said:
            say(f"  {now}")
            said = now

    return progress


@contextmanager
def fresh_stack(setup: Setup) -> Iterator[Stack]:
    """A new stack of this configuration in a new temporary folder, deleted afterwards."""
    began = time.monotonic()
    options = {"executor": "CeleryExecutor", "workers": setup.workers} if setup.workers else {}
    with temporary_stack("rlops-sweep-", **options) as stack:
        say(f"  stack up in {time.monotonic() - began:.0f} s")
        yield stack


def measure(setup: Setup, steps: int) -> Result:
    """One sweep on a fresh stack of this configuration."""
    say(f"{setup.label}: starting a stack")
    with fresh_stack(setup) as stack:
        if setup.workers:
            slots = setup.workers * WORKER_CONCURRENCY
        else:
            slots = int(stack.airflow_env()["AIRFLOW__CORE__PARALLELISM"])
        with AirflowApi(stack, DAG_ID) as api:
            api.open_for_manual_runs(timeout=180)
            run_id = api.start_run(sweep_conf(steps))
            say(f"  triggered {run_id}")
            # Sequential trainings at >=100 steps/s, plus a generous allowance for the rest.
            timeout = 600 + SEEDS * steps / 100
            run = api.wait_for_run(run_id, timeout, progress=trainings_progress(api))
            if run["state"] != "success":
                raise SweepFailed(f"{run_id} failed: {api.unfinished_tasks(run_id)}")
            trained = train_instances(api, run_id)
        say("  stopping the stack")
    names = {worker.address: f"w{worker.number}" for worker in stack.celery_workers}
    by_host = Counter({name: 0 for name in names.values()})
    by_host.update(names.get(ti["hostname"], ti["hostname"]) for ti in trained)
    starts = [_when(ti, "start_date") for ti in trained]
    ends = [_when(ti, "end_date") for ti in trained]
    durations = [_seconds(start, end) for start, end in zip(starts, ends, strict=True)]
    result = Result(
        setup=setup,
        slots=slots,
        wall=_seconds(_when(run, "start_date"), _when(run, "end_date")),
        train_span=_seconds(min(starts), max(ends)),
        train_mean=sum(durations) / len(durations),
        trains_by_host=dict(by_host),
        retried=sum(ti["try_number"] > 1 for ti in trained),
    )
    say(f"{setup.label}: run {result.wall:.1f} s, trainings {result.train_span:.1f} s")
    return result


def report(results: list[Result], steps: int, cores: int) -> None:
    """The table, with speedups over one Celery worker when that was measured."""
    baseline = next((r for r in results if r.setup.workers == 1), None)
    table = Table(
        title=f"{SEEDS}-seed sweep, {steps} steps each, one torch thread per task",
        caption="slots: tasks run at once; speedup over 1 Celery worker: DAG run / train span",
    )
    table.add_column("configuration")
    for column in ("slots", "DAG run s", "train span s", "mean train s", "speedup"):
        table.add_column(column, justify="right")
    table.add_column("train tasks by worker")
    for r in results:
        speedup = "-"
        if baseline is not None:
            speedup = f"{baseline.wall / r.wall:.2f}x / {baseline.train_span / r.train_span:.2f}x"
        hosts = ", ".join(f"{host} {n}" for host, n in sorted(r.trains_by_host.items()))
        table.add_row(
            r.setup.label,
            str(r.slots),
            f"{r.wall:.1f}",
            f"{r.train_span:.1f}",
            f"{r.train_mean:.1f}",
            speedup,
            hosts,
        )
    console = Console(width=None if sys.stdout.isatty() else 120)  # piped: not squeezed to 80
    console.print(f"CPU: {cpu.model()}, {cores} cores available to this process")
    console.print(table)
    for r in results:
        if r.slots > cores:
            console.print(f"note: {r.setup.label} runs {r.slots} tasks at once on {cores} cores")
        if r.retried:
            console.print(f"note: {r.setup.label}: {r.retried} train tasks were retried")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        choices=range(1, MAX_WORKERS + 1),
        metavar="N",
        help="Celery worker counts to measure, one fresh stack each (default: 1 2 4)",
    )
    parser.add_argument(
        "--no-local", action="store_true", help="skip the LocalExecutor (parallelism 2)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=16_000,
        help="env steps per training, at least 1000 (default: %(default)s, ~40 s on one core)",
    )
    args = parser.parse_args()
    if args.steps < 1000:
        parser.error("--steps must be at least 1000 (the DAG's minimum)")
    setups = ([] if args.no_local else [Setup(0)]) + [Setup(n) for n in args.workers]
    cores = len(os.sched_getaffinity(0))
    try:
        results = [measure(setup, args.steps) for setup in setups]
    except (StackError, SweepFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report(results, args.steps, cores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
