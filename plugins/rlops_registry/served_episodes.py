"""Episode returns reported by the policy server's clients: written by the server, read by the
drift guard.

A re-evaluation in the simulator tells how the policy does on the simulator; what the served
policy actually experiences only reaches rlops when clients report their episodes
(`POST /v1/episodes`). The server keeps those reports in MLflow, where the monitor already
reads everything else: one run per (server instance, model version) in the experiment
`rlops-served-episodes`, with the metrics `episode_return` and `episode_length` (step: the
report's order on that run, timestamp: when it was received). Replicas write their own runs;
the guard reads every run of a version. Writes are batched (`EpisodeLog.flush`), so a report
costs the client no MLflow round trip.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import Metric

from rl_core.common.tracking import get_or_create_experiment
from rlops_registry import tags

SERVED_EXPERIMENT_ENV = "RLOPS_SERVED_EXPERIMENT"
DEFAULT_SERVED_EXPERIMENT = "rlops-served-episodes"
RETURN_METRIC = "episode_return"
LENGTH_METRIC = "episode_length"
MLFLOW_BATCH = 500
"""Reports per `log_batch` call: two metrics each, within MLflow's 1,000 metrics per call."""


@dataclass(frozen=True)
class EpisodeReport:
    """One finished episode, as a client reported it and the server accepted it."""

    version: str
    episode_return: float
    length: int
    received_ms: int


def served_experiment() -> str:
    return os.environ.get(SERVED_EXPERIMENT_ENV, DEFAULT_SERVED_EXPERIMENT)


class EpisodeLog:
    """Accepted reports waiting to be written to MLflow, and the runs they go to.

    `add` is called on the server's event loop, `flush` in a worker thread; a lock keeps the
    queue whole between them. A flush that fails (MLflow down) puts its reports back, so
    nothing accepted is lost; a full queue (`capacity`) takes no more, and the server sheds the
    new load (429) instead of dropping what it accepted.
    """

    def __init__(
        self,
        model_name: str,
        instance: str,
        capacity: int = 100_000,
        client: MlflowClient | None = None,
    ) -> None:
        self.model_name = model_name
        self.instance = instance
        self.capacity = capacity
        self.client = client or MlflowClient()
        self._queue: deque[EpisodeReport] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time keeps steps in order
        self._runs: dict[str, tuple[str, int]] = {}  # version -> (run id, next step)

    def add(self, report: EpisodeReport) -> bool:
        """Queue `report`; False (nothing queued) when the queue is full."""
        with self._lock:
            if len(self._queue) >= self.capacity:
                return False
            self._queue.append(report)
            return True

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def flush(self) -> int:
        """Write every waiting report to MLflow; returns how many were written."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
            written = 0
            try:
                for version in dict.fromkeys(report.version for report in batch):
                    mine = [report for report in batch if report.version == version]
                    self._write(version, mine)
                    written += len(mine)
            except Exception:
                with self._lock:  # put back what was not written, ahead of newer reports
                    self._queue.extendleft(reversed(batch[written:]))
                raise
            return written

    def _write(self, version: str, reports: list[EpisodeReport]) -> None:
        run_id, step = self._runs.get(version) or (self._run_for(version), 0)
        for start in range(0, len(reports), MLFLOW_BATCH):
            chunk = reports[start : start + MLFLOW_BATCH]
            metrics = []
            for offset, report in enumerate(chunk):
                at = step + start + offset
                metrics.append(Metric(RETURN_METRIC, report.episode_return, report.received_ms, at))
                metrics.append(Metric(LENGTH_METRIC, float(report.length), report.received_ms, at))
            self.client.log_batch(run_id, metrics=metrics)
            self._runs[version] = (run_id, step + start + len(chunk))

    def _run_for(self, version: str) -> str:
        return self.client.create_run(
            get_or_create_experiment(self.client, served_experiment()),
            run_name=f"{self.model_name} v{version} served by {self.instance}",
            tags={
                tags.MODEL_NAME: self.model_name,
                tags.MODEL_VERSION: version,
                tags.SERVED_BY: self.instance,
            },
        ).info.run_id


def served_returns(
    model_name: str,
    version: str,
    since_ms: int,
    until_ms: int | None = None,
    client: MlflowClient | None = None,
) -> list[float]:
    """Returns of the episodes of `model_name` v`version` received from `since_ms` up to, not
    including, `until_ms` (epoch milliseconds; None: now), by every server instance, oldest
    first."""
    client = client or MlflowClient()
    experiment = client.get_experiment_by_name(served_experiment())
    if experiment is None:
        return []
    for value in (model_name, version):
        if "'" in value:
            raise ValueError(f"{value!r} may not contain a single quote")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`{tags.MODEL_NAME}` = '{model_name}' and "
            f"tags.`{tags.MODEL_VERSION}` = '{version}'"
        ),
        max_results=1000,
    )
    points = [
        (metric.timestamp, metric.step, metric.value)
        for run in runs
        for metric in client.get_metric_history(run.info.run_id, RETURN_METRIC)
        if metric.timestamp >= since_ms and (until_ms is None or metric.timestamp < until_ms)
    ]
    return [value for *_, value in sorted(points)]


def now_ms() -> int:
    return int(time.time() * 1000)
