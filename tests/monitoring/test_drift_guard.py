"""The drift guard against a real MLflow registry (SQLite): which evidence a check uses, the
reference, the breaches counted towards a rollback, and what moves.

The versions are untrained actors (tests/serving/policies.py); served traffic comes from
tests/monitoring/served.py, so a champion can "degrade" from one hour to the next.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlflow import MlflowClient

from rlops_airflow.drift import DriftRule
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitoring import (
    DEFAULT_MONITORING_EXPERIMENT,
    SERVED,
    SIMULATOR,
    Evidence,
    check_champion,
    fresh_seeds,
    guard,
)
from rlops_registry import registry
from rlops_registry.registry import (
    CHAMPION,
    PREVIOUS_CHAMPION,
    ModelRegistry,
    models_with_champion,
)
from tests.monitoring.served import report_episodes
from tests.serving.policies import register_broken_version, register_policy

MODEL = "rlops-monitor-test"
HOUR = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
EVIDENCE = Evidence(episodes=3, reference_episodes=4, min_served_episodes=50)
RULE = DriftRule(tolerance=0.05, confidence=0.95, breaches_to_rollback=2)
HEALTHY, DEGRADED = -150.0, -200.0
"""Mean served returns: the champion's reference hour, and an hour a third worse."""


def _airflow(hour: int) -> AirflowRun:
    return AirflowRun("rlops_champion_monitor", f"scheduled__{_at(hour).isoformat()}")


def _at(hour: int) -> datetime:
    return HOUR + timedelta(hours=hour)


def _crowned(seed: int) -> str:
    version = register_policy(MODEL, reward=-1000.0, seed=seed)
    ModelRegistry(MODEL).crown(version)
    return version


def _alias(alias: str) -> str | None:
    version = ModelRegistry(MODEL).alias(alias)
    return None if version is None else str(version.version)


def _tags(version: str) -> dict[str, str]:
    return ModelRegistry(MODEL).version(version).tags


def _report(version: str, hour: int, mean: float, n: int = 80) -> None:
    """`n` served episodes of `version` around `mean`, half an hour before check `hour`."""
    report_episodes(MODEL, version, _at(hour) - timedelta(minutes=30), mean, n, seed=hour)


def _check(hour: int):
    return check_champion(MODEL, EVIDENCE, _at(hour), _airflow(hour))


def test_fresh_seeds_are_reproducible_per_run_and_new_every_hour() -> None:
    seeds = fresh_seeds(HOUR, 50)
    assert seeds == fresh_seeds(HOUR, 50)  # a retry replays the same episodes
    assert len(set(seeds)) == 50
    assert not set(seeds) & set(fresh_seeds(_at(1), 50))
    assert not set(seeds) & set(range(1000, 1050))  # not the quality gate's eval seeds


def test_the_first_check_is_the_reference_and_a_retry_does_not_redo_it(mlflow_store) -> None:
    version = _crowned(seed=1)
    check = _check(0)
    assert (check.version, check.evidence, check.episodes) == (version, SIMULATOR, 4)
    assert check.reference_run_id is None
    assert _tags(version)["rlops.drift.reference.simulator"] == check.mlflow_run_id

    outcome = guard(check, RULE)
    assert (outcome.verdict, outcome.drifted, outcome.breaches) == (None, False, 0)
    assert "simulator reference" in outcome.action

    again = _check(0)  # the task retried: same run, same reference, same episodes
    assert again == check
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name(DEFAULT_MONITORING_EXPERIMENT).experiment_id]
    )
    assert len(runs) == 1

    later = _check(1)  # the next hour is compared with it, on fewer episodes
    assert (later.reference_run_id, later.episodes) == (check.mlflow_run_id, 3)
    assert later.mlflow_run_id != check.mlflow_run_id


def test_a_healthy_champion_is_never_rolled_back(mlflow_store) -> None:
    _crowned(seed=1)
    version = _crowned(seed=2)
    for hour in range(4):
        _report(version, hour, HEALTHY)
        check = _check(hour)
        assert check.evidence == SERVED
        outcome = guard(check, RULE)
        assert not outcome.drifted
        assert outcome.breaches == 0
    assert _alias(CHAMPION) == version
    tags = _tags(version)
    assert tags["rlops.drift.breaches"] == ""
    assert "over 80 episodes vs reference" in tags["rlops.drift.last_check"]
    assert "not entirely below" in tags["rlops.drift.last_check"]
    run = MlflowClient().get_run(check.mlflow_run_id)
    assert run.data.tags["rlops.drift"] == "none"
    assert run.data.tags["rlops.monitor.evidence"].startswith("served: 80 episodes")
    low, high = run.data.metrics["drift_difference_low"], run.data.metrics["drift_difference_high"]
    assert low < run.data.metrics["drift_difference"] < high
    allowed = run.data.metrics["drift_allowed_difference"]
    assert high >= allowed == pytest.approx(-0.05 * abs(HEALTHY), abs=0.5)


def test_a_degraded_champion_is_rolled_back_after_two_breaches_not_before(mlflow_store) -> None:
    good = _crowned(seed=1)
    degraded = _crowned(seed=2)
    _report(degraded, 0, HEALTHY)
    assert guard(_check(0), RULE).verdict is None  # the reference hour

    _report(degraded, 1, DEGRADED)
    first = _check(1)
    warned = guard(first, RULE)
    assert warned.verdict.breach
    assert (warned.breaches, warned.drifted) == (1, False)
    assert warned.action == "breach 1 of 2: no rollback yet"
    assert guard(first, RULE).breaches == 1  # a retried guard counts its check once
    assert _alias(CHAMPION) == degraded

    _report(degraded, 2, DEGRADED)
    second = _check(2)
    outcome = guard(second, RULE)
    assert (outcome.breaches, outcome.drifted) == (2, True)
    assert outcome.action == f"rolled back to v{good}"
    assert (_alias(CHAMPION), _alias(PREVIOUS_CHAMPION)) == (good, None)
    tags = _tags(degraded)
    assert tags["rlops.drift.breaches"].split() == [_airflow(1).key, _airflow(2).key]
    assert tags["rlops.drift.reason"].startswith("2 consecutive breaches, the last: online mean")
    assert tags["rlops.drift.action"] == f"rolled back to v{good}"
    restored = _tags(good)
    assert restored["rlops.rollback.reason"] == (
        f"champion again because v{degraded}: {tags['rlops.drift.reason']}"
    )
    assert restored["rlops.rollback.replaced_version"] == degraded
    assert restored["rlops.rollback.at"] == tags["rlops.drift.detected_at"]

    again = guard(second, RULE)  # the guard retried after the rollback: nothing moves twice
    assert again.action == f"not rolled back: champion already moved to v{good}"
    assert _alias(CHAMPION) == good


def test_a_healthy_hour_resets_the_breaches(mlflow_store) -> None:
    _crowned(seed=1)
    version = _crowned(seed=2)
    for hour, mean in enumerate([HEALTHY, DEGRADED, HEALTHY, DEGRADED]):
        _report(version, hour, mean)
        outcome = guard(_check(hour), RULE)
        assert not outcome.drifted
    assert outcome.breaches == 1
    assert _alias(CHAMPION) == version


def test_too_few_served_episodes_fall_back_to_the_simulator(mlflow_store) -> None:
    version = _crowned(seed=1)
    _report(version, 0, HEALTHY, n=EVIDENCE.min_served_episodes - 1)
    check = _check(0)
    assert check.evidence == SIMULATOR
    run = MlflowClient().get_run(check.mlflow_run_id)
    assert run.data.tags["rlops.monitor.evidence"] == (
        "simulator: 4 fresh episodes; 49 served episodes reported, fewer than 50"
    )
    assert run.data.metrics["online_mean_return"] == pytest.approx(check.online)


def test_a_drift_without_a_previous_champion_only_alerts(mlflow_store) -> None:
    only = _crowned(seed=1)
    for hour, mean in enumerate([HEALTHY, DEGRADED, DEGRADED]):
        _report(only, hour, mean)
        outcome = guard(_check(hour), RULE)
    assert outcome.drifted
    assert outcome.action == f"not rolled back: no previous champion, v{only} stays champion"
    assert _alias(CHAMPION) == only  # the alias is never deleted
    assert _tags(only)["rlops.drift.action"] == outcome.action


def test_a_champion_promoted_since_the_check_is_left_alone(mlflow_store) -> None:
    _crowned(seed=1)
    degraded = _crowned(seed=2)
    for hour, mean in enumerate([HEALTHY, DEGRADED]):
        _report(degraded, hour, mean)
        guard(_check(hour), RULE)
    _report(degraded, 2, DEGRADED)
    check = _check(2)
    newest = _crowned(seed=3)  # the nightly pipeline promoted meanwhile
    outcome = guard(check, RULE)
    assert outcome.action == f"not rolled back: champion already moved to v{newest}"
    assert _alias(CHAMPION) == newest


def test_nothing_to_check_without_a_champion(mlflow_store) -> None:
    register_policy(MODEL, reward=-1000.0)
    assert _check(0) is None


def test_the_monitor_watches_every_rlops_champion_and_nothing_else(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    for name in ("rlops-sac-pendulum", "b-model", "a-model"):
        ModelRegistry(name).crown(register_policy(name, reward=-1000.0))
    register_policy("no-champion-yet", reward=-1000.0)
    foreign = ModelRegistry("other-tooling")
    foreign.crown(register_broken_version("other-tooling", tmp_path))  # no env_id tag
    monkeypatch.setattr(registry, "MODELS_PER_PAGE", 2)  # the listing is paged
    assert models_with_champion() == ["a-model", "b-model", "rlops-sac-pendulum"]


def test_two_models_checked_in_one_airflow_run_keep_their_own_runs(mlflow_store) -> None:
    """Their versions are both 1: the check run is found again by model as well as version."""
    other = "rlops-monitor-other"
    first, second = _crowned(seed=1), register_policy(other, reward=-1000.0, seed=2)
    ModelRegistry(other).crown(second)
    assert first == second == "1"
    mine = _check(0)
    theirs = check_champion(other, EVIDENCE, _at(0), _airflow(0))
    assert mine.mlflow_run_id != theirs.mlflow_run_id
    run = MlflowClient().get_run(theirs.mlflow_run_id)
    assert run.data.tags["rlops.model_name"] == other
    assert _check(0).mlflow_run_id == mine.mlflow_run_id  # a retry still finds its own
