"""The drift rule, and the guard against a real MLflow registry (SQLite): what moves and why.

The versions are untrained actors (tests/serving/policies.py): on Pendulum they score about
-1,200 online, so a version "recorded" at -100 has dropped, and one recorded at -5,000 has not.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mlflow import MlflowClient

from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitoring import (
    DEFAULT_MONITORING_EXPERIMENT,
    OnlineCheck,
    check_champion,
    drift_threshold,
    fresh_seeds,
    guard,
    judge,
)
from rlops_registry.registry import CHAMPION, PREVIOUS_CHAMPION, ModelRegistry
from tests.serving.policies import register_policy

MODEL = "rlops-monitor-test"
EPISODES = 3
DROPPED, HEALTHY = -100.0, -5000.0
"""Recorded returns an untrained actor falls below / stays above online."""
HOUR = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
AIRFLOW = AirflowRun("rlops_champion_monitor", "scheduled__2026-11-22T14:00:00+00:00")


@pytest.mark.parametrize(
    ("recorded", "tolerance", "threshold"),
    [(-150.0, 0.05, -157.5), (90.0, 0.05, 85.5), (0.0, 0.05, 0.0), (-150.0, 0.0, -150.0)],
)
def test_the_threshold_is_taken_on_the_magnitude(recorded, tolerance, threshold) -> None:
    assert drift_threshold(recorded, tolerance) == pytest.approx(threshold)


@pytest.mark.parametrize(("online", "drifted"), [(-157.4, False), (-157.5, False), (-157.6, True)])
def test_drift_means_strictly_below_the_threshold(online, drifted) -> None:
    verdict = judge(OnlineCheck(MODEL, "3", -150.0, online, 50, "run"), 0.05)
    assert verdict.drifted is drifted
    assert verdict.threshold == pytest.approx(-157.5)
    assert f"online mean return {online:.2f} over 50 fresh episodes" in verdict.reason
    assert "recorded -150.00 minus 5% of its magnitude" in verdict.reason


def test_fresh_seeds_are_reproducible_per_run_and_new_every_hour() -> None:
    seeds = fresh_seeds(HOUR, 50)
    assert seeds == fresh_seeds(HOUR, 50)  # a retry replays the same episodes
    assert len(set(seeds)) == 50
    next_hour = fresh_seeds(HOUR.replace(hour=15), 50)
    assert not set(seeds) & set(next_hour)
    assert not set(seeds) & set(range(1000, 1010))  # not the quality gate's eval seeds


def _crowned(reward: float, seed: int) -> str:
    version = register_policy(MODEL, reward=reward, seed=seed)
    ModelRegistry(MODEL).crown(version)
    return version


def _alias(alias: str) -> str | None:
    version = ModelRegistry(MODEL).alias(alias)
    return None if version is None else str(version.version)


def _tags(version: str) -> dict[str, str]:
    return ModelRegistry(MODEL).version(version).tags


def test_a_drop_rolls_the_champion_back_and_tags_both_versions(mlflow_store) -> None:
    good = _crowned(HEALTHY, seed=1)
    dropped = _crowned(DROPPED, seed=2)
    check = check_champion(MODEL, EPISODES, HOUR, AIRFLOW)
    assert (check.version, check.recorded, check.episodes) == (dropped, DROPPED, EPISODES)
    assert check.online < 2 * DROPPED

    outcome = guard(check, tolerance=0.05)

    assert outcome.verdict.drifted
    assert outcome.action == f"rolled back to v{good}"
    assert (_alias(CHAMPION), _alias(PREVIOUS_CHAMPION)) == (good, None)
    drifted = _tags(dropped)
    assert drifted["rlops.drift.reason"] == outcome.verdict.reason
    assert drifted["rlops.drift.action"] == f"rolled back to v{good}"
    assert datetime.fromisoformat(drifted["rlops.drift.detected_at"]).tzinfo is not None
    restored = _tags(good)
    assert restored["rlops.rollback.reason"] == f"champion again because {outcome.verdict.reason}"
    assert restored["rlops.rollback.replaced_version"] == dropped
    assert restored["rlops.rollback.at"] == drifted["rlops.drift.detected_at"]

    # The check is in MLflow, against the version it judged.
    assert float(drifted["rlops.online_return"]) == pytest.approx(check.online, abs=1e-3)
    assert drifted["rlops.online_run_id"] == check.mlflow_run_id
    run = MlflowClient().get_run(check.mlflow_run_id)
    experiment = MlflowClient().get_experiment(run.info.experiment_id)
    assert experiment.name == DEFAULT_MONITORING_EXPERIMENT
    assert run.data.tags["rlops.model_version"] == dropped
    assert run.data.tags["airflow.run_id"] == AIRFLOW.run_id
    assert run.data.tags["rlops.drift"] == "detected"
    assert run.data.metrics["online_mean_return"] == pytest.approx(check.online)
    assert run.data.metrics["recorded_reward"] == DROPPED
    assert run.data.metrics["drift_threshold"] == pytest.approx(outcome.verdict.threshold)

    # The guard run again (a retried or cleared task) does not roll back a second time.
    again = guard(check, tolerance=0.05)
    assert again.action == f"not rolled back: champion already moved to v{good}"
    assert _alias(CHAMPION) == good


def test_no_drift_changes_nothing(mlflow_store) -> None:
    version = _crowned(HEALTHY, seed=1)
    outcome = guard(check_champion(MODEL, EPISODES, HOUR, AIRFLOW), tolerance=0.05)
    assert not outcome.verdict.drifted
    assert outcome.action == "none"
    assert _alias(CHAMPION) == version
    tags = _tags(version)
    assert "rlops.online_return" in tags
    assert not any(key.startswith(("rlops.drift.", "rlops.rollback.")) for key in tags)


def test_a_drop_without_a_previous_champion_only_alerts(mlflow_store) -> None:
    only = _crowned(DROPPED, seed=1)
    outcome = guard(check_champion(MODEL, EPISODES, HOUR, AIRFLOW), tolerance=0.05)
    assert outcome.verdict.drifted
    assert outcome.action == f"not rolled back: no previous champion, v{only} stays champion"
    assert _alias(CHAMPION) == only  # the alias is never deleted
    assert _tags(only)["rlops.drift.action"] == outcome.action


def test_a_champion_promoted_since_the_check_is_left_alone(mlflow_store) -> None:
    _crowned(HEALTHY, seed=1)
    _crowned(DROPPED, seed=2)
    check = check_champion(MODEL, EPISODES, HOUR, AIRFLOW)
    newest = _crowned(HEALTHY, seed=3)  # the nightly pipeline promoted meanwhile
    outcome = guard(check, tolerance=0.05)
    assert outcome.action == f"not rolled back: champion already moved to v{newest}"
    assert _alias(CHAMPION) == newest


def test_nothing_to_check_without_a_champion(mlflow_store) -> None:
    register_policy(MODEL, reward=HEALTHY)
    assert check_champion(MODEL, EPISODES, HOUR, AIRFLOW) is None
