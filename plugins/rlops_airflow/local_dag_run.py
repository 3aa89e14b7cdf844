"""Run one DAG end to end on Airflow's LocalExecutor and come back when the run is over, even
when the executor's shutdown does not.

    python -m rlops_airflow.local_dag_run <dag_id> '<conf json>' <log file>

`airflow dags test --use-executor` runs each task in its own supervised process, as production
does. When the run has finished, Airflow 3.3.2's `LocalExecutor.end()` sends each worker a
shutdown message and joins it without a timeout; a worker still waiting on its task queue then
keeps the command alive for ever after the run's state is in the database (seen here once in
about forty runs; the same unbounded join as apache/airflow#67870 and #45329). The scheduler's
log says how the run ended ("DagRun Finished: ... state=success") before the executor shuts
down, so once that line is written the command gets a grace period to exit by itself; then its
process group is stopped and the logged state stands. A run that has not finished is never cut
short, however long training takes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

SHUTDOWN_GRACE_S = 60.0
"""How long the command may take to exit once the run's final state is logged (a clean
shutdown takes about a second)."""

STOP_GRACE_S = 10.0
"""How long the stopped process group gets between SIGTERM and SIGKILL (LocalExecutor's
workers can ignore SIGTERM)."""

RUN_FINISHED = re.compile(r"DagRun Finished: dag_id=[^,]+, .*?\bstate=(?P<state>\w+)")
"""The scheduler's log line written when the DAG run reaches its final state."""

SUCCESS = "success"


@dataclass(frozen=True)
class DagRunOutcome:
    """How the run ended: its final state, and whether the command had to be stopped after it."""

    state: str
    stopped_after_finish: bool

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCESS


def dags_test_command(dag_id: str, conf: str) -> list[str]:
    """The Airflow CLI call that runs `dag_id` once with `conf`, tasks on the LocalExecutor."""
    return ["airflow", "dags", "test", "--use-executor", dag_id, "-c", conf]


class _LogFollower:
    """Reads a growing log file line by line and remembers the run's final state once logged."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._partial = b""
        self.final_state: str | None = None

    def read_new_lines(self) -> None:
        lines = (self._partial + self._file.read()).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            match = RUN_FINISHED.search(line.decode(errors="replace"))
            if match:
                self.final_state = match["state"]

    def close(self) -> None:
        self._file.close()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop what is left of the process's group (the CLI, its executor workers, their tasks):
    SIGTERM, then SIGKILL once the leader has had `STOP_GRACE_S` to exit."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_S)
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is empty: everything exited by itself
    process.wait()


def run_to_completion(
    command: Sequence[str],
    log_path: Path,
    *,
    shutdown_grace_s: float = SHUTDOWN_GRACE_S,
    poll_s: float = 1.0,
) -> DagRunOutcome:
    """Run `command` (an `airflow dags test`) in its own process group, output to `log_path`,
    until it exits, or until `shutdown_grace_s` after it logged the run's final state. The
    group is stopped if this function is left any other way (Ctrl+C, SIGTERM)."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    follower = _LogFollower(log_path)
    finished_at: float | None = None
    try:
        while True:
            try:
                returncode: int | None = process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                returncode = None
            follower.read_new_lines()
            if returncode is not None:
                state = SUCCESS if returncode == 0 else "failed"  # Airflow's own verdict
                return DagRunOutcome(state, stopped_after_finish=False)
            if follower.final_state is not None and finished_at is None:
                finished_at = time.monotonic()
            if finished_at is not None and time.monotonic() - finished_at > shutdown_grace_s:
                return DagRunOutcome(follower.final_state, stopped_after_finish=True)
    finally:
        follower.close()
        _stop_group(process)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(128 + signum)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlops_airflow.local_dag_run")
    parser.add_argument("dag_id")
    parser.add_argument("conf", help="the run's conf, a JSON object")
    parser.add_argument("log", type=Path, help="file for the scheduler's log")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # SystemExit: run_to_completion stops the group
    outcome = run_to_completion(dags_test_command(args.dag_id, args.conf), args.log)
    if outcome.stopped_after_finish:
        print(
            f"note: the run finished ({outcome.state}) but Airflow's LocalExecutor had not shut "
            f"down {SHUTDOWN_GRACE_S:.0f} s later (a worker left waiting, apache/airflow#67870); "
            "stopped it",
            file=sys.stderr,
        )
    return 0 if outcome.succeeded else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
