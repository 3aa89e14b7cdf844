"""The devstack's restart policy (devstack/keepalive.py): a service that exits on its own is
started again, one that is stopped stays stopped, one that keeps failing is given up on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.keepalive import supervise
from devstack.stack import KEEPALIVE


def _service(marker: Path, code: int, sleep: float = 0.0) -> list[str]:
    """A service that notes each start in `marker`, then exits with `code` after `sleep` s."""
    script = (
        f"import time, pathlib; p = pathlib.Path({str(marker)!r}); "
        f"p.write_text(p.read_text() + 'start\\n' if p.exists() else 'start\\n'); "
        f"time.sleep({sleep}); raise SystemExit({code})"
    )
    return [sys.executable, "-c", script]


def test_a_service_that_keeps_exiting_is_restarted_then_given_up_with_its_code(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "starts"
    code = supervise("svc", _service(marker, 3), quick_exit_s=30, give_up_after=3, backoff_s=(0.0,))
    assert code == 3
    assert marker.read_text().count("start") == 3  # started, restarted twice, then given up


def test_a_service_that_ran_a_while_starts_the_count_of_quick_exits_afresh(
    tmp_path: Path,
) -> None:
    """An outage after a service ran a while is not a bad setting: its exit does not count
    towards giving up. Here the first run lasts, the next two exit at once: given up after the
    third start (two quick exits), not after the second."""
    marker = tmp_path / "starts"
    script = (
        f"import pathlib, time; p = pathlib.Path({str(marker)!r}); "
        "n = len(p.read_text().split()) if p.exists() else 0; "
        "p.write_text('start\\n' * (n + 1)); time.sleep(3.0 if n == 0 else 0); "
        "raise SystemExit(4)"
    )
    code = supervise(
        "svc", [sys.executable, "-c", script], quick_exit_s=2.5, give_up_after=2, backoff_s=(0,)
    )
    assert code == 4
    assert marker.read_text().count("start") == 3


def test_a_stopped_service_stays_stopped(tmp_path: Path) -> None:
    """SIGTERM to the group (how the devstack stops a service): the wrapper exits with the
    service and starts nothing again."""
    marker = tmp_path / "starts"
    wrapper = subprocess.Popen(
        [sys.executable, str(KEEPALIVE), "svc", "--", *_service(marker, 0, sleep=60)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(wrapper.pid, signal.SIGTERM)
    assert wrapper.wait(timeout=30) != 0
    time.sleep(1.5)  # longer than a restart's wait: a restart would have written again
    assert marker.read_text().count("start") == 1
