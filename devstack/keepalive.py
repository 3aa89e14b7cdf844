"""Run a service and start it again when it exits on its own: compose's `restart: unless-stopped`.

Airflow's scheduler, DAG processor, triggerer and API server exit when their database goes away
(a Postgres restart, a failover): Airflow leaves bringing them back to whatever supervises them.
docker-compose.yaml does it with a restart policy; the devstack does it with this wrapper, so
the two topologies recover from the same faults.

    python devstack/keepalive.py NAME -- ARGV...

A stop is a signal (SIGTERM / SIGINT) to the service's process group, which reaches this
wrapper too: it then waits for the service and exits with it, restarting nothing. A service that
exits again within `QUICK_EXIT_S` of its start, `GIVE_UP_AFTER` times in a row, is not restarted
(a bad setting, not a passing outage): the wrapper exits with its code, and whoever waits for
the service sees it die.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

QUICK_EXIT_S = 10.0
GIVE_UP_AFTER = 5
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 10.0)
"""The wait before a restart: the first after a service that ran a while, then one step longer
for each quick exit in a row (the last repeats)."""


class _Stopping:
    """Set once the service is told to stop: its exit is then the wrapper's."""

    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def supervise(
    name: str,
    argv: list[str],
    quick_exit_s: float = QUICK_EXIT_S,
    give_up_after: int = GIVE_UP_AFTER,
    backoff_s: tuple[float, ...] = BACKOFF_S,
) -> int:
    """Run `argv` until it is stopped or keeps failing; its last exit code.

    The stop signal is not forwarded: it reaches the service through its process group, and a
    second SIGTERM would make Airflow's scheduler quit without waiting for its running tasks."""
    stopping = _Stopping()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    quick_exits = 0
    while True:
        started = time.monotonic()
        code = subprocess.call(argv)
        if stopping.requested:
            return code
        quick_exits = quick_exits + 1 if time.monotonic() - started < quick_exit_s else 0
        if quick_exits >= give_up_after:
            print(
                f"devstack keepalive: {name} exited {quick_exits} times within "
                f"{quick_exit_s:.0f} s of starting (last code {code}); not restarting it",
                file=sys.stderr,
                flush=True,
            )
            return code
        wait = backoff_s[min(quick_exits, len(backoff_s)) - 1] if quick_exits else backoff_s[0]
        print(
            f"devstack keepalive: {name} exited with code {code}; restarting it in {wait:.0f} s "
            "(as docker-compose.yaml's restart: unless-stopped)",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(wait)
        if stopping.requested:
            return code


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: keepalive.py NAME -- ARGV...", file=sys.stderr)
        return 2
    return supervise(args[0], args[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
