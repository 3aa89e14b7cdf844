"""Episodes reported by clients (`POST /v1/episodes`): checked, counted, queued for MLflow.

What the served policy earns reaches rlops only through these reports, and they feed the drift
guard and the canary, so a report is taken only if this server can vouch for what it can:

- its ticket (tickets.py) was signed by this server, for the reporting key, and has not
  expired: the episode was served, by the version the ticket names;
- its `length` is at most the steps served under that ticket;
- its return is one the env can give over that length: within length x the per-step reward
  range the env declares (`reward_range`), else the configured `step_reward_min/max`;
- its episode was not reported before (ids are remembered until their ticket expires);
- its key has not exceeded its report rate (token bucket), and the queue for MLflow has room.

What it cannot vouch for is the return itself within those bounds: that is why served evidence
is confirmed in the simulator before it moves an alias (rlops_airflow.monitoring). A refused
report leaves no trace. An accepted one goes into the per-version summaries on `/metrics` and
waits in `rlops_registry.served_episodes.EpisodeLog`, which a background task writes to MLflow
every `episode_flush_seconds` and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rlops_registry.served_episodes import EpisodeLog, EpisodeReport, now_ms
from rlops_serving.canary import CanaryRouter
from rlops_serving.metrics import ServingMetrics
from rlops_serving.schemas import EpisodeReportRequest, field_error
from rlops_serving.settings import ServingSettings
from rlops_serving.tickets import Ticket, TicketError, TicketSigner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why a report was not taken: an HTTP status, errors in pydantic's shape, and for a 429
    when to try again."""

    status: int
    errors: list[dict[str, Any]]
    retry_after: float | None = None


class ReportRate:
    """A token bucket per API key: `rate` reports a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: int, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)

    def wait(self, key_id: str) -> float:
        """Take one report from the key's bucket: 0.0, or the seconds until one is left."""
        now = self._clock()
        tokens, at = self._buckets.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0.0


@lru_cache(maxsize=64)
def declared_reward_range(env_id: str) -> tuple[float, float] | None:
    """The per-step reward range the env's class declares (`reward_range`), if any.

    Read from the class its registration names, without making the env; an id the server
    cannot resolve (its package is not imported here) declares nothing.
    """
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    try:
        creator = load_env_creator(gymnasium.spec(env_id).entry_point)
    except Exception:  # not registered here, or its module does not import
        return None
    declared = getattr(creator, "reward_range", None)
    try:
        low, high = (float(bound) for bound in declared)
    except (TypeError, ValueError):
        return None
    return (low, high) if low <= high and not math.isnan(low + high) else None


class EpisodeIntake:
    """Takes reports on the event loop; writes them to MLflow from a worker thread."""

    def __init__(
        self,
        episode_log: EpisodeLog,
        router: CanaryRouter,
        signer: TicketSigner,
        metrics: ServingMetrics,
        settings: ServingSettings,
    ) -> None:
        self.episode_log = episode_log
        self.router = router
        self.signer = signer
        self.metrics = metrics
        self.configured_range = (settings.step_reward_min, settings.step_reward_max)
        self.capacity = settings.max_reported_episodes
        self.rate = ReportRate(settings.report_rate_per_key, settings.report_burst)
        self.flush_seconds = settings.episode_flush_seconds
        self._reported: OrderedDict[bytes, int] = OrderedDict()  # episode -> ticket expiry

    def submit(
        self, report: EpisodeReportRequest, key_id: str
    ) -> tuple[str | None, Refusal | None]:
        """Accept `report` from the key `key_id`: (its version, None), or (None, why not);
        then nothing was recorded."""
        wait = self.rate.wait(key_id)
        if wait:
            message = f"key {key_id!r} sent more than its report rate allows; retry later"
            return None, Refusal(429, [field_error((), message)], retry_after=wait)
        try:
            ticket = self.signer.decode(report.ticket, key_id)
        except TicketError as exc:
            return None, Refusal(422, [field_error(("ticket",), f"ticket {exc}")])
        refusal = self._bounds_refusal(report, ticket) or self._repeat_refusal(ticket)
        if refusal is not None:
            return None, refusal
        version = str(ticket.version)
        queued = self.episode_log.add(
            EpisodeReport(version, report.episode_return, report.length, received_ms=now_ms())
        )
        if not queued:
            message = f"{self.episode_log.pending()} reports wait for MLflow; retry later"
            return None, Refusal(429, [field_error((), message)], self.flush_seconds)
        self._remember(ticket)
        self.metrics.episode_return.labels(version).observe(report.episode_return)
        self.metrics.episode_length.labels(version).observe(report.length)
        return version, None

    def _bounds_refusal(self, report: EpisodeReportRequest, ticket: Ticket) -> Refusal | None:
        if report.length > ticket.steps:
            message = f"{report.length} steps, but {ticket.steps} were served under this ticket"
            return Refusal(422, [field_error(("length",), message)])
        low, high, source = self._step_range(str(ticket.version))
        least, most = report.length * low, report.length * high
        if not least <= report.episode_return <= most:
            message = (
                f"a return over {report.length} steps lies in [{least:g}, {most:g}] "
                f"({source} per step: [{low:g}, {high:g}])"
            )
            return Refusal(422, [field_error(("return",), message)])
        return None

    def _step_range(self, version: str) -> tuple[float, float, str]:
        served = self.router.resume(version)
        declared = declared_reward_range(served.policy.env.id) if served else None
        if declared is not None:
            return (*declared, "the env's reward_range")
        return (*self.configured_range, "the server's step_reward_min/max")

    def _repeat_refusal(self, ticket: Ticket) -> Refusal | None:
        if ticket.episode in self._reported:
            message = f"episode {ticket.episode_id} was reported already"
            return Refusal(409, [field_error(("ticket",), message)])
        now = time.time()
        while self._reported and next(iter(self._reported.values())) <= now:
            self._reported.popitem(last=False)  # its ticket expired: it cannot come back
        if len(self._reported) >= self.capacity:
            message = f"{self.capacity} recent episodes remembered, the most there can be"
            return Refusal(429, [field_error((), message)], retry_after=60.0)
        return None

    def _remember(self, ticket: Ticket) -> None:
        self._reported[ticket.episode] = self.signer.expiry(ticket)

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
