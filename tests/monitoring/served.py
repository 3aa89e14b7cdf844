"""Served traffic for the monitoring tests, written by the policy server's own writer
(`EpisodeLog`) with the reception time a test needs, so a version can "degrade" by the hour,
or a client can forge an hour's reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from rlops_airflow.monitoring import millis, simulate
from rlops_registry.served_episodes import EpisodeLog, EpisodeReport

SPREAD = 10.0
"""Standard deviation of the reported returns around their mean."""
HONEST_SEEDS = 7_000_000
"""First env seed of the episodes honest clients play: none a check or reference draws."""


def report_returns(model: str, version: str, received: datetime, returns: Sequence[float]) -> None:
    """Report one episode of `model` v`version` per return, all received at `received`."""
    log = EpisodeLog(model, "test-server")
    for value in returns:
        log.add(EpisodeReport(version, float(value), 200, millis(received)))
    assert log.flush() == len(returns)


def report_episodes(
    model: str, version: str, received: datetime, mean: float, n: int = 80, seed: int = 0
) -> list[float]:
    """Report `n` episodes of `model` v`version` with returns around `mean`; returns them."""
    returns = [float(r) for r in mean + np.random.default_rng(seed).normal(0.0, SPREAD, n)]
    report_returns(model, version, received, returns)
    return returns


def honest_returns(model: str, version: str, n: int) -> list[float]:
    """What honest clients of `model` v`version` would report: its returns in the simulator
    on `n` episodes of seeds no monitor check draws."""
    return simulate(model, version, list(range(HONEST_SEEDS, HONEST_SEEDS + n)))
