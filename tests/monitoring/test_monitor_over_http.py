"""The drift guard judges what clients reported over HTTP: episodes played against a real
policy server (`/v1/act`, under tickets) and reported to it (`/v1/episodes`) are written by the
server to the MLflow store the monitor reads, and the monitor's decision is taken on exactly
those episodes.

The server runs in a thread of this process on the test's SQLite MLflow store
(tests/serving/conftest.py); the monitor's check and guard run in-process, as the monitor DAG's
`evaluate_champion` and `drift_guard` tasks call them, one "hour" after another: each check
counts what was received since the previous one. The versions are untrained actors (a
Pendulum one returns about -1400, spread by about 250); a healthy client plays Pendulum as the
simulator does, a client in a gusty world (which the simulator does not model) gets about
-2200.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import gymnasium as gym
import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from rlops_airflow.drift import DriftRule
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitoring import (
    RETURNS_ARTIFACT,
    SERVED,
    Evidence,
    GuardOutcome,
    OnlineCheck,
    SimulatorRecheck,
    check_champion,
    guard,
    millis,
)
from rlops_registry import tags
from rlops_registry.registry import CHAMPION, ModelRegistry
from rlops_registry.served_episodes import served_experiment, served_returns
from tests.monitoring.served import (
    HONEST_SEEDS,
    PlayedEpisode,
    play_over_http,
    report_over_http,
)
from tests.serving.conftest import KEYS, MODEL, running_server, wait_for
from tests.serving.policies import ENV_ID, register_policy
from tests.serving.test_episodes import PENDULUM_STEP, episode_settings

EPISODES = 10
"""Episodes a client plays and reports per hour: each costs 200 requests."""
EVIDENCE = Evidence(episodes=20, reference_episodes=50, min_served_episodes=EPISODES)
RULE = DriftRule(tolerance=0.2, confidence=0.95, breaches_to_rollback=2)
"""20%, not the DAG's 5%: the simulator reference's seeds come from the clock, and with 10
served episodes of a spread of 250 a healthy hour would breach 5% about once in 500 checks; 20%
is never reached by chance, and the gusty world's loss (about 60%) always breaches it."""
GUST = 1.0
"""Angular velocity (rad/s) a gust adds to the pendulum before every step."""


class Gusts(gym.Wrapper):
    """A world the simulator does not model: a gust spins the pendulum at every step."""

    def step(self, action: np.ndarray) -> tuple:
        self.env.unwrapped.state[1] += GUST
        return self.env.step(action)


@dataclass
class Monitor:
    """The monitor DAG's hourly checks of MODEL's champion, each counting the episodes the
    server received since the previous check (its served window)."""

    since: datetime = field(default_factory=lambda: datetime.now(UTC))
    hour: int = 0

    def check(self, confirm_with_simulator: bool) -> tuple[OnlineCheck, GuardOutcome]:
        moment = datetime.now(UTC)
        evidence = replace(EVIDENCE, window=moment - self.since)
        airflow = AirflowRun("rlops_champion_monitor", f"scheduled__hour-{self.hour}")
        check = check_champion(MODEL, evidence, moment, airflow)
        assert check is not None
        recheck = SimulatorRecheck(EVIDENCE.episodes, moment) if confirm_with_simulator else None
        outcome = guard(check, RULE, recheck)
        self.since, self.hour = moment, self.hour + 1
        return check, outcome


@pytest.fixture
def versions(mlflow_store: str) -> tuple[str, str]:
    """(previous champion, champion): two versions of MODEL, the second crowned last."""
    previous = register_policy(MODEL, reward=-1000.0, seed=1)
    ModelRegistry(MODEL).crown(previous)
    champion = register_policy(MODEL, reward=-1000.0, seed=2)
    ModelRegistry(MODEL).crown(champion)
    return previous, champion


@pytest.fixture
def http(versions: tuple[str, str]) -> Iterator[httpx.Client]:
    """A client of the champion's server, with a key that may act and report, nothing else."""
    with (
        running_server(episode_settings()) as server,
        httpx.Client(base_url=server.url, headers=KEYS["reporter"], timeout=10) as client,
    ):
        yield client


def _serve_hour(http: httpx.Client, env: gym.Env, seeds: Sequence[int]) -> list[PlayedEpisode]:
    """Play one episode per seed against the server and report each (accepted)."""
    played = []
    for seed in seeds:
        episode = play_over_http(http, env, seed)
        answer = report_over_http(http, episode)
        assert answer.status_code == 202, answer.text
        assert answer.json()["model_version"] == episode.version
        played.append(episode)
    return played


def _check_after_flush(
    monitor: Monitor, version: str, reported: list[float], confirm_with_simulator: bool
) -> tuple[OnlineCheck, GuardOutcome]:
    """The next hour's check, once the server has written this hour's `reported` episodes.
    MLflow keeps no episode ids, so episodes are told apart by their returns: all differ."""
    assert len(set(reported)) == len(reported)
    since = millis(monitor.since)
    wait_for(lambda: len(served_returns(MODEL, version, since)) >= len(reported), "the flush")
    check, outcome = monitor.check(confirm_with_simulator)
    assert (check.version, check.evidence, check.episodes) == (version, SERVED, len(reported))
    judged = mlflow.artifacts.load_dict(f"runs:/{check.mlflow_run_id}/{RETURNS_ARTIFACT}")
    assert judged["returns"] == reported  # in the order the server received them
    return check, outcome


def _champion() -> str:
    return str(ModelRegistry(MODEL).alias(CHAMPION).version)


def _serving(http: httpx.Client) -> str:
    """The version the server acts with now."""
    answer = http.post("/v1/act", json={"observation": [1.0, 0.0, 0.0]})
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def test_healthy_clients_reports_are_what_the_monitor_judges_and_nothing_moves(
    versions, http
) -> None:
    """Each hour's check judges exactly that hour's accepted reports (a report refused for
    its return, or replayed, is not among them) and finds no breach."""
    _, champion = versions
    monitor = Monitor()
    accepted = []
    with gym.make(ENV_ID) as env:
        for hour in range(2):
            first = HONEST_SEEDS + hour * (EPISODES + 1)
            played = _serve_hour(http, env, range(first, first + EPISODES))
            assert report_over_http(http, played[0]).status_code == 409  # a replay
            lying = play_over_http(http, env, first + EPISODES)
            below = lying.length * PENDULUM_STEP[0] - 1.0  # less than the env can give
            assert report_over_http(http, lying, below).status_code == 422
            reported = [episode.episode_return for episode in played]
            check, outcome = _check_after_flush(monitor, champion, reported, True)
            assert not outcome.verdict.breach, outcome.reason
            assert (outcome.breaches, outcome.unconfirmed, outcome.action) == (0, False, "none")
            assert f"over {EPISODES} episodes vs reference" in outcome.reason
            run = MlflowClient().get_run(check.mlflow_run_id)
            assert run.data.tags[tags.DRIFT_VERDICT] == "none"
            accepted += reported
    assert _champion() == champion
    assert served_returns(MODEL, champion, 0) == accepted  # refused reports left no trace
    experiment = MlflowClient().get_experiment_by_name(served_experiment())
    served_runs = MlflowClient().search_runs([experiment.experiment_id])
    assert [run.data.tags[tags.MODEL_VERSION] for run in served_runs] == [champion]


def test_a_gusty_world_alerts_and_rolls_back_only_when_served_evidence_acts_alone(
    versions, http
) -> None:
    """The clients' world got worse in a way the simulator does not model: with the
    simulator re-check (the default) the breach is unconfirmed and moves nothing; with
    `confirm_with_simulator` off two such hours roll the champion back, and the server
    then serves the previous champion."""
    previous, champion = versions
    monitor = Monitor()
    hours = [  # confirm_with_simulator, then the guard's decision: unconfirmed, breaches, ...
        (True, (True, 0, False, "none: the simulator did not confirm the served breach")),
        (False, (False, 1, False, "breach 1 of 2: no rollback yet")),
        (False, (False, 2, True, f"rolled back to v{previous}")),
    ]
    with Gusts(gym.make(ENV_ID)) as env:
        for hour, (confirm, decision) in enumerate(hours):
            first = HONEST_SEEDS + hour * EPISODES
            played = _serve_hour(http, env, range(first, first + EPISODES))
            assert {episode.version for episode in played} == {champion}
            reported = [episode.episode_return for episode in played]
            check, outcome = _check_after_flush(monitor, champion, reported, confirm)
            assert check.online == pytest.approx(np.mean(reported))
            assert check.online < -2000.0  # what the gusts cost: about -1400 without them
            verdict = (outcome.unconfirmed, outcome.breaches, outcome.drifted, outcome.action)
            assert verdict == decision, outcome.reason
    assert _champion() == previous
    wait_for(lambda: _serving(http) == previous, "the server following the rollback")
