"""`rlops_airflow.local_dag_run`: the README's pipeline command must come back once the DAG run
is over, even when the command running it (Airflow's LocalExecutor shutting down) does not,
and must never cut a run short or leave processes behind.

A stand-in for `airflow dags test` plays each case: it starts a child (as the executor starts
workers), logs the scheduler's final line, then exits or hangs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from rlops_airflow.local_dag_run import run_to_completion
from tests.conftest import REPO

FINISHED_LINE = (
    "2026-12-05T03:58:50.614456Z [info     ] DagRun Finished: dag_id=rlops_sac_pipeline, "
    "logical_date=2026-12-05 03:57:41+00:00, run_id=manual__2026-12-05T03:57:42, "
    "run_duration=68.6, state={state}, run_type=manual, [airflow.models.dagrun.DagRun]"
)


def stand_in(*, state: str | None, then: str) -> list[str]:
    """A fake `airflow dags test`: prints its worker's pid, logs the run's final `state` (if
    any) in two writes, then `then` runs ("hang" sleeps for ever, else `sys.exit(...)`)."""
    line = FINISHED_LINE.format(state=state) if state else ""
    ending = "time.sleep(3600)" if then == "hang" else then
    script = textwrap.dedent(
        f"""
        import subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print("worker", worker.pid, flush=True)
        time.sleep(1)
        line = {line!r}
        print(line[:40], end="", flush=True)
        time.sleep(0.5)
        print(line[40:], flush=True)
        {ending}
        """
    )
    return [sys.executable, "-c", script]


def worker_pid(log: Path) -> int:
    deadline = time.monotonic() + 60
    while not log.exists() or not log.read_text().startswith("worker "):
        assert time.monotonic() < deadline, "the stand-in did not start"
        time.sleep(0.1)
    return int(log.read_text().split()[1])


def gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process `pid` has exited (or is a zombie) within `within_s`: a SIGKILLed
    process takes a moment to die on a busy machine."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.mark.timeout(60)  # a watchdog that never fires would hang here
@pytest.mark.parametrize("state", ["success", "failed"])
def test_a_hung_shutdown_after_the_run_finished_is_stopped_and_the_logged_state_stands(
    tmp_path: Path, state: str
) -> None:
    log = tmp_path / "scheduler.log"
    outcome = run_to_completion(stand_in(state=state, then="hang"), log, shutdown_grace_s=1)
    assert outcome.stopped_after_finish
    assert outcome.state == state
    assert outcome.succeeded == (state == "success")
    assert gone(worker_pid(log)), "the executor's worker was left running"


def test_a_run_that_has_not_finished_is_never_cut_short(tmp_path: Path) -> None:
    """No final line yet: however small the grace, the command runs until it exits."""
    command = stand_in(state=None, then="time.sleep(2); sys.exit(0)")
    outcome = run_to_completion(command, tmp_path / "log", shutdown_grace_s=0.1, poll_s=0.1)
    assert not outcome.stopped_after_finish
    assert outcome.succeeded


def test_the_exit_code_decides_when_the_command_exits_by_itself(tmp_path: Path) -> None:
    command = stand_in(state="success", then="sys.exit(1)")
    outcome = run_to_completion(command, tmp_path / "log", shutdown_grace_s=60)
    assert (outcome.state, outcome.stopped_after_finish) == ("failed", False)


@pytest.mark.timeout(60)
def test_sigterm_to_the_command_stops_the_whole_run(tmp_path: Path) -> None:
    """Stopping the README's command (SIGTERM) leaves no Airflow process behind: they run in
    their own process group, which the terminal's signals do not reach."""
    log = tmp_path / "scheduler.log"
    runner = textwrap.dedent(
        f"""
        import sys
        from rlops_airflow import local_dag_run
        local_dag_run.dags_test_command = lambda dag_id, conf: {stand_in(state=None, then="hang")!r}
        sys.exit(local_dag_run.main(["rlops_sac_pipeline", "{{}}", {str(log)!r}]))
        """
    )
    command = subprocess.Popen([sys.executable, "-c", runner], cwd=REPO / "plugins")
    pid = worker_pid(log)
    command.terminate()
    assert command.wait(timeout=60) == 128 + 15
    assert gone(pid), "the executor's worker was left running"
