"""Episodes reported by clients (`POST /v1/episodes`): checked, counted, queued for MLflow.

What the served policy earns only reaches rlops through these reports, so a report is taken
only if this server can vouch for it: its version was served by this process (since it
started), its episode was not pinned to another version, and its `episode_id` (if any) was
not reported for that version before (the last `REMEMBERED_REPORTS` ids per version are
kept, enough for a client's retries). A refused report leaves no trace. An accepted one
closes its episode (canary.py), goes into the per-version summaries on `/metrics`, and waits
in `rlops_registry.served_episodes.EpisodeLog`, which a background task writes to MLflow
every `episode_flush_seconds` and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from rlops_registry.served_episodes import EpisodeLog, EpisodeReport, now_ms
from rlops_serving.canary import CanaryRouter
from rlops_serving.metrics import ServingMetrics
from rlops_serving.schemas import EpisodeReportRequest, field_error

log = logging.getLogger(__name__)

REMEMBERED_REPORTS = 100_000
"""Episode ids remembered per version to refuse a second report of the same episode."""


@dataclass(frozen=True)
class Refusal:
    """Why a report was not taken: an HTTP status and errors in pydantic's shape."""

    status: int
    errors: list[dict[str, Any]]


class EpisodeIntake:
    """Takes reports on the event loop; writes them to MLflow from a worker thread."""

    def __init__(
        self,
        episode_log: EpisodeLog,
        router: CanaryRouter,
        metrics: ServingMetrics,
        remembered: int = REMEMBERED_REPORTS,
    ) -> None:
        self.episode_log = episode_log
        self.router = router
        self.metrics = metrics
        self.remembered = remembered
        self._reported: defaultdict[str, OrderedDict[str, None]] = defaultdict(OrderedDict)

    def submit(self, report: EpisodeReportRequest) -> Refusal | None:
        """Accept `report`, or say why not (then nothing was recorded)."""
        refusal = self._refusal(report)
        if refusal is None:
            self._accept(report)
        return refusal

    def _refusal(self, report: EpisodeReportRequest) -> Refusal | None:
        version, episode_id = report.model_version, report.episode_id
        served = self.router.served_versions()
        if version not in served:
            listed = ", ".join(sorted(served, key=int)) or "none yet"
            message = f"version {version} was not served by this server; it served: {listed}"
            return Refusal(422, [field_error(("model_version",), message)])
        if episode_id is None:
            return None
        pinned = self.router.pinned(episode_id)
        if pinned is not None and pinned.policy.version != version:
            message = f"episode {episode_id} was served by version {pinned.policy.version}"
            return Refusal(422, [field_error(("model_version",), message)])
        if episode_id in self._reported.get(version, ()):
            message = f"episode {episode_id} of version {version} was reported already"
            return Refusal(409, [field_error(("episode_id",), message)])
        return None

    def _accept(self, report: EpisodeReportRequest) -> None:
        version = report.model_version
        self.episode_log.add(
            EpisodeReport(version, report.episode_return, report.length, received_ms=now_ms())
        )
        self.metrics.episode_return.labels(version).observe(report.episode_return)
        self.metrics.episode_length.labels(version).observe(report.length)
        if report.episode_id is not None:
            self.router.close(report.episode_id)
            reported = self._reported[version]
            reported[report.episode_id] = None
            if len(reported) > self.remembered:
                reported.popitem(last=False)

    async def flush_every(self, seconds: float) -> None:
        """Write the waiting reports to MLflow every `seconds` until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            await self.flush()

    async def flush(self) -> None:
        """Write the waiting reports now; if MLflow fails they wait for the next flush."""
        try:
            await asyncio.to_thread(self.episode_log.flush)
        except Exception:
            log.exception(
                "could not write %d episode reports to MLflow; they wait for the next flush",
                self.episode_log.pending(),
            )
