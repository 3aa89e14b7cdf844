"""Service processes: started as process-group leaders, found again by PID, stopped as groups.

The stack outlives `python -m devstack up`, so `down` knows its processes only by the PIDs in
the state file. Each service leads its own session (start_new_session=True), so one signal to
the group also reaches what it forked (uvicorn workers, LocalExecutor workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

import httpx
import psutil
from pydantic import BaseModel


class StackError(RuntimeError):
    """A service could not be started, did not become ready, or died."""


class ProcessRef(BaseModel):
    """A started service: its PID (= process group) and its start time, to detect PID reuse."""

    pid: int
    started: float

    def members(self) -> list[psutil.Process]:
        """The live processes of the group; empty once it is gone.

        Zombies are skipped: they still answer kill(pid, 0), and this machine's init does not
        reap orphans. A leader PID taken by a newer process means our group is long gone.
        """
        try:
            leader = psutil.Process(self.pid)
            if abs(leader.create_time() - self.started) > 0.5:
                return []
        except psutil.NoSuchProcess:
            pass  # the leader died; workers it forked may still hold the group
        return group_members(self.pid)

    def kill(self, timeout: float = 20.0) -> None:
        """SIGKILL the group and every group its processes started, as a machine's death would.

        A Celery worker's task runner leads a process group of its own (Airflow's task
        supervisor forks it with new_process_group), which a signal to the worker's group alone
        would leave running, orphaned, still training and uploading.
        """
        groups = {self.pid}
        for proc in self.members():
            for child in _children(proc):
                with suppress(ProcessLookupError):
                    groups.add(os.getpgid(child.pid))
        groups.discard(os.getpgid(0))  # never our own
        for group in groups:
            with suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while alive := [proc.pid for group in groups for proc in group_members(group)]:
            if time.monotonic() > deadline:
                raise StackError(f"processes survived SIGKILL: {alive}")
            time.sleep(0.1)


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid` (zombies do not count)."""
    found = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _children(proc: psutil.Process) -> list[psutil.Process]:
    """All descendants of proc; none once it is gone."""
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (picked by the kernel; taken by the service soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start argv as the leader of a new session, stdout and stderr appended to log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ref_of(proc: subprocess.Popen[bytes]) -> ProcessRef:
    """What the state file keeps of a freshly spawned process."""
    return ProcessRef(pid=proc.pid, started=psutil.Process(proc.pid).create_time())


def stop_groups(refs: Iterable[ProcessRef], grace: float = 20.0) -> None:
    """SIGTERM every group at once, then SIGKILL whatever is still alive after `grace` seconds.

    A LocalExecutor worker may ignore SIGTERM once its scheduler is gone, hence the SIGKILL.
    """
    live = [ref for ref in refs if ref.members()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for ref in live:
            try:
                os.killpg(ref.pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + grace
        while live and time.monotonic() < deadline:
            time.sleep(0.2)
            live = [ref for ref in live if ref.members()]
        if not live:
            return
    raise StackError(f"processes survived SIGKILL: {[ref.pid for ref in live]}")


def http_ok(url: str) -> bool:
    """GET url answers 200. Never through a proxy: every service is on loopback."""
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def listening(host: str, port: int) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def log_tail(log: Path, lines: int = 25) -> str:
    """The end of a service log, for error messages."""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"(no log at {log})"
    return f"last lines of {log}:\n" + "\n".join(text)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    procs: dict[str, subprocess.Popen[bytes]],
    logs: dict[str, Path],
    timeout: float,
) -> None:
    """Poll ready() until it holds; fail early, with the log, if one of procs exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode}\n{log_tail(logs[name])}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(log_tail(logs[name]) for name in procs)
            raise StackError(f"{what} not ready after {timeout:.0f} s\n{tails}")
        time.sleep(0.25)
