"""Which policy is served: the version a registry alias points to, followed as the alias moves.

A background loop asks the registry every `poll_seconds`. When the alias points elsewhere, the
new version is downloaded, loaded and warmed up in a worker thread while the old one keeps
answering; then one reference assignment swaps it in. A request reads that reference once, so
it is answered entirely by one version, and no request ever finds the server without a model.
A version that fails to load is logged and counted; the served one stays.
"""

from __future__ import annotations

import asyncio
import gc
import logging

from rlops_registry.registry import ModelRegistry
from rlops_serving.metrics import ServingMetrics
from rlops_serving.policy import ServedPolicy, load_policy

log = logging.getLogger(__name__)


class ChampionWatcher:
    """Holds the served policy and replaces it when the registry alias moves."""

    def __init__(self, registry: ModelRegistry, alias: str, metrics: ServingMetrics) -> None:
        self.registry = registry
        self.alias = alias
        self.metrics = metrics
        self.policy: ServedPolicy | None = None

    def refresh(self) -> None:
        """Load and swap in the alias' version, unless it is the one served.

        Blocking (registry calls, download, TorchScript load): run it in a worker thread.
        """
        target = self.registry.alias(self.alias)
        if target is None:
            log.warning("%s@%s is not set; nothing new to serve", self.registry.name, self.alias)
            return
        self.metrics.version_tags(target.tags)
        version = str(target.version)
        current = self.policy
        if current is not None and current.version == version:
            return
        try:
            policy = load_policy(self.registry.name, version)
        except Exception:
            self.metrics.model_loads.labels("failure").inc()
            raise
        self.metrics.model_loads.labels("success").inc()
        self.policy = policy  # the swap: requests already running keep their own reference
        self.metrics.served(policy)
        # Move everything alive now (the model, torch, mlflow) out of the collector's reach:
        # full collections stop scanning it, which is what caused the long p99 tail.
        gc.freeze()
        log.info(
            "serving %s v%s (was %s)",
            policy.model_name,
            version,
            f"v{current.version}" if current else "nothing",
        )

    async def follow(self, poll_seconds: float) -> None:
        """Refresh every `poll_seconds` until cancelled; never dies of a registry outage."""
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:  # MLflow down, a broken version: keep serving, retry next poll
                log.exception("could not refresh %s@%s", self.registry.name, self.alias)
