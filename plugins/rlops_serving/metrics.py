"""Prometheus metrics of the policy server, and the ASGI middleware that records them.

Every app gets its own `CollectorRegistry`, so several servers (tests) can live in one process.
The middleware is plain ASGI rather than Starlette's `BaseHTTPMiddleware`, which costs a task
and a queue per request; it sees every response, 422s and 500s included.

Series that belong to a model version carry `version` (and `alias` where the same version
can be served under both): only versions this server loaded become label values, so a client
cannot create series. The latency histogram and the requests counter learn the version from
the handler, which writes
it into the ASGI scope: Starlette's router and `Request` use the very dict the middleware
holds (the router updates it in place).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlops_registry import tags as tag_names
from rlops_registry.served_episodes import EpisodeLog
from rlops_serving.policy import ServedPolicy

LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
"""Seconds. Inside the server a batch-1 request takes 50-100 µs; the tail is GC and CPU steal."""
BATCH_BUCKETS = tuple(float(2**k) for k in range(17))
OTHER_PATH = "other"
VERSION_SCOPE_KEY = "rlops.model_version"
"""ASGI scope key where a handler records the model version a request concerned."""


class ServingMetrics:
    """The server's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "rlops_serving_request_duration_seconds",
            "Time from request start to the end of the response, by path and model version "
            "(empty: none concerned), so a canary's latency shows beside the champion's.",
            ["path", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "rlops_serving_requests",
            "Responses sent, by path, status and model version (empty: none concerned).",
            ["path", "status", "version"],
            registry=r,
        )
        self.errors = Counter(
            "rlops_serving_errors",
            "Responses with status >= 400 (500 when the app raised), by path and status.",
            ["path", "status"],
            registry=r,
        )
        self.in_flight = Gauge(
            "rlops_serving_requests_in_flight", "Requests being processed.", registry=r
        )
        self.batch_size = Histogram(
            "rlops_serving_batch_size",
            "Observations per forward pass (count: forward passes, sum: observations).",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.model = Info(
            "rlops_serving_model",
            "The model version served under each alias.",
            ["alias"],
            registry=r,
        )
        self.runtime = Info(
            "rlops_serving_model_runtime",
            "What runs the version served under each alias: torchscript or onnx (ONNX Runtime).",
            ["alias"],
            registry=r,
        )
        self.observations = Counter(
            "rlops_serving_observations",
            "Observations answered, by model version and the alias it was chosen through.",
            ["version", "alias"],
            registry=r,
        )
        self.model_loads = Counter(
            "rlops_serving_model_loads",
            "Attempts to load a model version, by outcome (success, failure).",
            ["outcome"],
            registry=r,
        )
        self.online_return = Gauge(
            "rlops_serving_model_online_mean_return",
            "Online mean return of the alias' version, from the monitoring DAG (NaN: none yet).",
            ["alias"],
            registry=r,
        )
        self.recorded_reward = Gauge(
            "rlops_serving_model_recorded_reward",
            "Mean eval return recorded when the alias' version was registered.",
            ["alias"],
            registry=r,
        )
        self.episode_return = Summary(
            "rlops_serving_episode_return",
            "Returns of the episodes clients reported, by model version (sum/count: the mean).",
            ["version"],
            registry=r,
        )
        self.episode_length = Summary(
            "rlops_serving_episode_length",
            "Steps of the episodes clients reported, by model version.",
            ["version"],
            registry=r,
        )

    def served(self, alias: str, policy: ServedPolicy) -> None:
        self.model.labels(alias).info({"name": policy.model_name, "version": policy.version})
        self.runtime.labels(alias).info({"version": policy.version, "runtime": policy.runtime})

    def version_tags(self, alias: str, tags: dict[str, str]) -> None:
        """Mirror the registry's view of the alias' version (refreshed at every poll)."""
        self.online_return.labels(alias).set(_number(tags.get(tag_names.ONLINE_RETURN)))
        self.recorded_reward.labels(alias).set(_number(tags.get(tag_names.REWARD)))

    def episode_log(self, log: EpisodeLog) -> None:
        """Export the report queue's size, read from `log` at every scrape."""
        self.registry.register(_EpisodeLogCollector(log))


class _EpisodeLogCollector(Collector):
    """Reads the EpisodeLog's queue length at each scrape (in total, not per version)."""

    def __init__(self, log: EpisodeLog) -> None:
        self.log = log

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "rlops_serving_episode_reports_pending",
            "Accepted episode reports not yet written to MLflow (when it reaches the server's "
            "max_pending_episodes, new reports get a 429).",
            value=self.log.pending(),
        )


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


class RequestMetrics:
    """ASGI middleware: latency, status, errors and in-flight count of every HTTP request.

    Paths outside `paths` are counted as "other", so random URLs cannot create new series.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics, paths: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in self.paths else OTHER_PATH
        status = 500  # what the client gets if the app raises before responding

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics = self.metrics
        metrics.in_flight.inc()
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            version = scope.get(VERSION_SCOPE_KEY, "")
            metrics.latency.labels(path, version).observe(time.perf_counter() - start)
            metrics.in_flight.dec()
            metrics.requests.labels(path, str(status), version).inc()
            if status >= 400:
                metrics.errors.labels(path, str(status)).inc()
