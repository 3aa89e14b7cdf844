"""Served traffic for the monitoring tests, written by the policy server's own writer
(`EpisodeLog`) with the reception time a test needs, so a version can "degrade" by the hour."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from rlops_airflow.monitoring import millis
from rlops_registry.served_episodes import EpisodeLog, EpisodeReport

SPREAD = 10.0
"""Standard deviation of the reported returns around their mean."""


def report_episodes(
    model: str, version: str, received: datetime, mean: float, n: int = 80, seed: int = 0
) -> list[float]:
    """Report `n` episodes of `model` v`version` with returns around `mean`; returns them."""
    returns = [float(r) for r in mean + np.random.default_rng(seed).normal(0.0, SPREAD, n)]
    log = EpisodeLog(model, "test-server")
    for value in returns:
        log.add(EpisodeReport(version, value, 200, millis(received)))
    assert log.flush() == n
    return returns
