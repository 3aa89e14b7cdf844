"""Served traffic for the monitoring tests: either written by the policy server's own writer
(`EpisodeLog`) with the reception time a test needs, so a version can "degrade" by the hour,
or a client can forge an hour's reports; or played and reported over HTTP by a client of a
real server (`play_over_http`, `report_over_http`), the path real traffic takes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import gymnasium as gym
import httpx
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


@dataclass(frozen=True)
class PlayedEpisode:
    """An episode a client played with the server's actions: what its report may say."""

    ticket: str
    """The episode's latest ticket, the one its report carries."""
    episode_return: float
    length: int
    version: str
    """The version that served every step (the ticket binds the episode to it)."""


def play_over_http(http: httpx.Client, env: gym.Env, seed: int) -> PlayedEpisode:
    """One episode of `env` from `seed` with every action asked of the server (`/v1/act`,
    under the episode's ticket), as a client of the served policy plays it. `http` carries
    the server's address and a key with the `act` scope."""
    observation, _ = env.reset(seed=seed)
    body: dict[str, object] = {"start_episode": True}
    total, length, done = 0.0, 0, False
    while not done:
        answer = http.post("/v1/act", json=body | {"observation": observation.tolist()})
        assert answer.status_code == 200, answer.text
        served = answer.json()
        action = np.asarray(served["action"], dtype=np.float32)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        length += 1
        done = terminated or truncated
        body = {"ticket": served["ticket"]}
    return PlayedEpisode(served["ticket"], total, length, served["model_version"])


def report_over_http(
    http: httpx.Client, episode: PlayedEpisode, episode_return: float | None = None
) -> httpx.Response:
    """Report `episode` (`/v1/episodes`) with its return, or with `episode_return` as a
    lying client would; the server's answer."""
    claimed = episode.episode_return if episode_return is None else episode_return
    body = {"ticket": episode.ticket, "return": claimed, "length": episode.length}
    return http.post("/v1/episodes", json=body)
