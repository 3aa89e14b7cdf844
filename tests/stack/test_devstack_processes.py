"""devstack's process handling: what `down` relies on to stop a stack it did not start itself."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from devstack.processes import ProcessRef, ref_of, spawn, stop_groups

ENV = {"PATH": os.defpath}


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_stop_groups_kills_a_whole_group_that_ignores_sigterm(tmp_path: Path) -> None:
    # Like a LocalExecutor worker whose scheduler is gone: SIGTERM is not enough.
    leader = spawn(["sh", "-c", "trap '' TERM; sleep 60 & wait"], ENV, tmp_path / "sh.log")
    ref = ref_of(leader)
    _wait_for(lambda: len(ref.members()) == 2)  # sh and its sleep

    stop_groups([ref], grace=0.5)

    assert ref.members() == []
    assert leader.wait(timeout=5) == -9


def test_zombies_do_not_count_as_running(tmp_path: Path) -> None:
    proc = spawn(["true"], ENV, tmp_path / "true.log")
    ref = ref_of(proc)
    _wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE)
    assert ref.members() == []
    proc.wait()


def test_a_pid_reused_by_another_process_is_left_alone() -> None:
    # A stale state file must never make `down` signal an unrelated process group.
    stale = ProcessRef(pid=os.getpid(), started=0.0)  # this PID, started long ago
    assert stale.members() == []


def test_kill_reaches_the_groups_a_service_started_too(tmp_path: Path) -> None:
    # Like a Celery worker whose task runner leads a process group of its own (setsid here).
    leader = spawn(["sh", "-c", "setsid sleep 60 & sleep 60 & wait"], ENV, tmp_path / "sh.log")
    ref = ref_of(leader)

    def own_groups() -> list[psutil.Process]:
        return [p for p in psutil.Process(leader.pid).children() if os.getpgid(p.pid) == p.pid]

    _wait_for(lambda: len(own_groups()) == 1 and len(ref.members()) == 2)  # sh and one sleep
    (own_group,) = own_groups()

    ref.kill()

    assert ref.members() == []
    assert leader.wait(timeout=5) == -9
    assert not own_group.is_running() or own_group.status() == psutil.STATUS_ZOMBIE
