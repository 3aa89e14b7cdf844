"""Which policy is served: the version a registry alias points to, followed as the alias moves.

A background loop asks the registry every `poll_seconds`. When the alias points elsewhere, the
new version is downloaded, loaded and warmed up in a worker thread while the old one keeps
answering; then one reference assignment swaps it in. A request reads that reference once, so
it is answered entirely by one version, and no request ever finds the server without a model.
A version that fails to load is logged and counted; the served one stays.

The server runs one watcher for `champion` and, with a canary, one for the canary's alias;
each loads and fails on its own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from prometheus_client import Counter

from rlops_registry.registry import CHAMPION, ModelRegistry, models_with_champion
from rlops_serving.metrics import ServingMetrics
from rlops_serving.policy import Runtime, ServedPolicy, load_policy
from rlops_serving.settings import ENV_PREFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Served:
    """A loaded version under the alias it was loaded for: what answers a request."""

    policy: ServedPolicy
    alias: str
    observations: Counter
    """Its (version, alias) series of `rlops_serving_observations`, looked up once per load
    rather than per request (a label lookup costs about a microsecond)."""


class ChampionWatcher:
    """Holds the policy a registry alias points to and replaces it when the alias moves."""

    def __init__(
        self,
        registry: ModelRegistry,
        alias: str,
        metrics: ServingMetrics,
        runtime: Runtime = "auto",
    ) -> None:
        self.registry = registry
        self.alias = alias
        self.metrics = metrics
        self.runtime: Runtime = runtime
        """Which runtime runs the versions it loads (`ServingSettings.runtime`)."""
        self.served: Served | None = None
        self.versions: frozenset[str] = frozenset()
        """Every version this watcher has served since the process started."""
        self.unset: str | None = None
        """Why nothing is served, when the alias is not set: what an unready server answers."""

    def refresh(self) -> None:
        """Load and swap in the alias' version, unless it is the one served.

        Blocking (registry calls, download, TorchScript load): run it in a worker thread.
        """
        try:
            target = self.registry.alias(self.alias)
        except MlflowException as exc:
            if exc.error_code != "PERMISSION_DENIED":
                raise
            # MLflow's basic-auth answers 403, not 404, for a model that does not exist yet.
            self.unset = (
                f"{self.registry.name}@{self.alias}: MLflow refuses to show it to this server's "
                "user (the model is not registered yet, or the user may not READ it)"
            )
            log.warning("%s; nothing new to serve", self.unset)
            return
        if target is None:
            self.unset = self._why_unset()
            log.warning("%s; nothing new to serve", self.unset)
            return
        self.unset = None
        self.metrics.version_tags(self.alias, target.tags)
        version = str(target.version)
        current = self.served
        if current is not None and current.policy.version == version:
            return
        try:
            policy = load_policy(self.registry.name, version, self.runtime)
        except Exception:
            self.metrics.model_loads.labels("failure").inc()
            raise
        self.metrics.model_loads.labels("success").inc()
        observations = self.metrics.observations.labels(version, self.alias)
        # The swap: requests already running keep their own reference. The set is replaced,
        # never changed in place, because the event loop reads it while this thread runs.
        self.served = Served(policy, self.alias, observations)
        self.versions = self.versions | {version}
        self.metrics.served(self.alias, policy)
        # Move everything alive now (the model, torch, mlflow) out of the collector's reach:
        # full collections stop scanning it, which is what caused the long p99 tail.
        gc.freeze()
        log.info(
            "serving %s v%s as %s with %s (was %s)",
            policy.model_name,
            version,
            self.alias,
            policy.runtime,
            f"v{current.policy.version}" if current else "nothing",
        )

    def _why_unset(self) -> str:
        """The alias is not set; while nothing is served under `champion`, which models have
        one, since each env's policies live in a model of their own and the server may be
        pointed at the wrong one (listing every model is not worth it once it serves)."""
        unset = f"{self.registry.name}@{self.alias} is not set"
        if self.alias != CHAMPION or self.served is not None:
            return unset
        others = [m for m in models_with_champion(self.registry.client) if m != self.registry.name]
        if not others:
            return unset
        return (
            f"{unset}; models with a champion: {', '.join(others)} "
            f"({ENV_PREFIX}MODEL_NAME chooses the model to serve)"
        )

    async def follow(self, poll_seconds: float) -> None:
        """Refresh every `poll_seconds` until cancelled; never dies of a registry outage."""
        while True:
            await asyncio.sleep(poll_seconds)
            await self.refresh_logged()

    async def refresh_logged(self) -> None:
        """`refresh` in a worker thread; a failure (MLflow down, a broken version) is logged
        and the served version stays."""
        try:
            await asyncio.to_thread(self.refresh)
        except Exception:
            log.exception("could not refresh %s@%s", self.registry.name, self.alias)
