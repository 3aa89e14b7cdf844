"""The drift guard against a real MLflow registry (SQLite): which evidence a check uses, the
simulator reference, the simulator re-check of a served breach, the breaches counted towards
a rollback, and what moves.

The versions are untrained actors (tests/serving/policies.py; a Pendulum one returns about
-1400 in the simulator); served traffic comes from tests/monitoring/served.py, so a champion
can "degrade" from one hour to the next, honest clients report what the version really does
in the simulator, and a forger reports what it likes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import mlflow
import pytest
from mlflow import MlflowClient

from rlops_airflow.drift import DriftRule
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitoring import (
    CANARY_SEEDS,
    DEFAULT_MONITORING_EXPERIMENT,
    RECHECK_ARTIFACT,
    REFERENCE_SEEDS,
    REFERENCE_TAG,
    RETURNS_ARTIFACT,
    SERVED,
    SIMULATOR,
    Evidence,
    GuardOutcome,
    SimulatorRecheck,
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
from tests.monitoring.served import honest_returns, report_episodes, report_returns
from tests.serving.policies import register_broken_version, register_policy

MODEL = "rlops-monitor-test"
HOUR = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
EVIDENCE = Evidence(episodes=5, reference_episodes=10, min_served_episodes=50)
RULE = DriftRule(tolerance=0.05, confidence=0.95, breaches_to_rollback=2)
DEGRADED = -3000.0
"""Mean served return of an hour far below anything an untrained Pendulum actor gets in the
simulator (about -1400): a breach on served traffic."""
SERVED_REFERENCE_TAG = "rlops.drift.reference.served"
"""What the guard once compared served checks with: served traffic no one vouched for."""


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


def _report_returns(version: str, hour: int, returns: list[float]) -> None:
    report_returns(MODEL, version, _at(hour) - timedelta(minutes=30), returns)


def _check(hour: int):
    return check_champion(MODEL, EVIDENCE, _at(hour), _airflow(hour))


def _guard(check, hour: int, confirm: bool = True) -> GuardOutcome:
    """The guard as the DAG runs it at `hour`, re-checking served breaches unless told not to."""
    recheck = SimulatorRecheck(EVIDENCE.episodes, _at(hour)) if confirm else None
    return guard(check, RULE, recheck)


def _monitoring_runs() -> list:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(DEFAULT_MONITORING_EXPERIMENT)
    return client.search_runs([experiment.experiment_id])


def _run(run_id: str):
    return MlflowClient().get_run(run_id)


def test_fresh_seeds_are_reproducible_per_run_and_new_every_hour() -> None:
    seeds = fresh_seeds(HOUR, 50)
    assert seeds == fresh_seeds(HOUR, 50)  # a retry replays the same episodes
    assert len(set(seeds)) == 50
    assert not set(seeds) & set(fresh_seeds(_at(1), 50))
    assert not set(seeds) & set(range(1000, 1050))  # not the quality gate's eval seeds
    # a served check's reference and its re-check, drawn in the same hour, share no episode
    assert not set(seeds) & set(fresh_seeds(HOUR, 50, REFERENCE_SEEDS))
    assert not set(fresh_seeds(HOUR, 50, CANARY_SEEDS)) & set(seeds)


def test_the_first_check_is_the_reference_and_a_retry_does_not_redo_it(mlflow_store) -> None:
    version = _crowned(seed=1)
    check = _check(0)
    assert (check.version, check.evidence, check.episodes) == (version, SIMULATOR, 10)
    assert check.reference_run_id is None
    assert _tags(version)[REFERENCE_TAG] == check.mlflow_run_id

    outcome = _guard(check, 0)
    assert (outcome.verdict, outcome.drifted, outcome.breaches) == (None, False, 0)
    assert "simulator reference" in outcome.action

    again = _check(0)  # the task retried: same run, same reference, same episodes
    assert again == check
    assert len(_monitoring_runs()) == 1

    later = _check(1)  # the next hour is compared with it, on fewer episodes
    assert (later.reference_run_id, later.episodes) == (check.mlflow_run_id, 5)
    assert later.mlflow_run_id != check.mlflow_run_id


def test_a_first_served_check_is_compared_with_a_simulator_reference_made_once(
    mlflow_store,
) -> None:
    version = _crowned(seed=1)
    _report_returns(version, 0, honest_returns(MODEL, version, 80))
    check = _check(0)
    assert check.evidence == SERVED
    reference = check.reference_run_id
    assert reference is not None
    assert _tags(version)[REFERENCE_TAG] == reference
    assert SERVED_REFERENCE_TAG not in _tags(version)
    recorded = mlflow.artifacts.load_dict(f"runs:/{reference}/{RETURNS_ARTIFACT}")
    assert recorded["evidence"] == SIMULATOR
    assert recorded["seeds"] == fresh_seeds(_at(0), 10, REFERENCE_SEEDS)
    run = _run(reference)
    assert run.data.tags["rlops.monitor.purpose"] == "reference"
    assert run.data.tags["rlops.drift"] == "reference"

    assert _check(0) == check  # retried: the reference is found again, not made twice
    # retried after dying between making the reference and tagging the version with it
    MlflowClient().delete_model_version_tag(MODEL, version, REFERENCE_TAG)
    assert _check(0) == check
    assert len(_monitoring_runs()) == 2  # the check and its reference

    outcome = _guard(check, 0)
    assert not outcome.verdict.breach
    assert "over 80 episodes vs reference" in outcome.reason
    assert "over 10:" in outcome.reason


@pytest.mark.parametrize("confirm", [True, False])
def test_a_forged_first_served_hour_does_not_poison_the_reference(mlflow_store, confirm) -> None:
    """Rollback poisoning: 150 reports of -10 in a champion's first served hour once became
    its reference, and every later honest hour a breach, until it was rolled back unasked.
    The reference is the simulator's, so this holds even with served evidence acting alone."""
    _crowned(seed=1)
    version = _crowned(seed=2)
    previous = _alias(PREVIOUS_CHAMPION)
    _report_returns(version, 0, [-10.0] * 150)
    forged = _check(0)
    assert forged.evidence == SERVED
    assert not _guard(forged, 0, confirm).verdict.breach  # better than the simulator: no alarm
    honest = honest_returns(MODEL, version, 80)
    for hour in (1, 2, 3):
        _report_returns(version, hour, honest)
        check = _check(hour)
        assert (check.evidence, check.reference_run_id) == (SERVED, forged.reference_run_id)
        outcome = _guard(check, hour, confirm)
        assert (outcome.breaches, outcome.unconfirmed, outcome.drifted) == (0, False, False)
        assert (_alias(CHAMPION), _alias(PREVIOUS_CHAMPION)) == (version, previous)
    tags = _tags(version)
    assert SERVED_REFERENCE_TAG not in tags
    reference = _run(tags[REFERENCE_TAG])
    assert reference.data.tags["rlops.monitor.evidence"].startswith("simulator: 10 fresh")
    assert tags["rlops.drift.breaches"] == ""


def test_a_served_breach_the_simulator_does_not_confirm_moves_nothing(mlflow_store) -> None:
    """Reports far below what the champion does in the simulator: with the re-check (the
    default) two such hours only alert; trusting served evidence alone, two roll it back."""
    good = _crowned(seed=1)
    champion = _crowned(seed=2)
    for hour in (0, 1):
        _report(champion, hour, DEGRADED)
        check = _check(hour)
        outcome = _guard(check, hour)
        assert outcome.unconfirmed
        assert (outcome.breaches, outcome.drifted) == (0, False)
        assert outcome.action == "none: the simulator did not confirm the served breach"
        assert "the simulator re-check does not confirm it" in outcome.reason
        run = _run(check.mlflow_run_id)
        assert run.data.tags["rlops.drift"] == "unconfirmed"
        assert run.data.tags["rlops.drift.last_check"] == outcome.reason
        metrics = run.data.metrics  # the served interval far below the simulator's
        assert metrics["drift_difference_high"] < metrics["recheck_difference_low"]
        rechecked = mlflow.artifacts.load_dict(f"runs:/{check.mlflow_run_id}/{RECHECK_ARTIFACT}")
        assert rechecked["seeds"] == fresh_seeds(_at(hour), EVIDENCE.episodes)
        assert _tags(champion)["rlops.drift.last_check"] == outcome.reason
        assert _guard(check, hour) == outcome  # retried: the same re-check, the same outcome
        assert (_alias(CHAMPION), _alias(PREVIOUS_CHAMPION)) == (champion, good)
    assert len(_monitoring_runs()) == 3  # two checks and the reference: no re-check run

    for hour in (2, 3):  # confirm_with_simulator off: served evidence acts alone
        _report(champion, hour, DEGRADED)
        outcome = _guard(_check(hour), hour, confirm=False)
        assert not outcome.unconfirmed
    assert (outcome.breaches, outcome.drifted) == (2, True)
    assert outcome.action == f"rolled back to v{good}"
    assert _alias(CHAMPION) == good


def test_a_breach_the_simulator_confirms_rolls_back(mlflow_store) -> None:
    """The re-check does not disarm the guard: when the simulator, too, shows the champion
    worse than its reference (here: a reference rewritten as if the env had got easier since),
    two served breaches roll it back."""
    good = _crowned(seed=1)
    champion = _crowned(seed=2)
    _report(champion, 0, DEGRADED)
    first = _check(0)
    reference = first.reference_run_id
    MlflowClient().log_dict(
        reference,
        {"evidence": SIMULATOR, "seeds": None, "returns": [-100.0, -110.0, -90.0]},
        RETURNS_ARTIFACT,
    )
    warned = _guard(first, 0)
    assert (warned.unconfirmed, warned.breaches) == (False, 1)
    assert "the simulator re-check confirms it" in warned.reason
    assert _run(first.mlflow_run_id).data.tags["rlops.drift"] == "breach"
    _report(champion, 1, DEGRADED)
    outcome = _guard(_check(1), 1)
    assert (outcome.breaches, outcome.drifted) == (2, True)
    assert outcome.action == f"rolled back to v{good}"
    assert _alias(CHAMPION) == good


def test_a_healthy_champion_is_never_rolled_back(mlflow_store) -> None:
    _crowned(seed=1)
    version = _crowned(seed=2)
    honest = honest_returns(MODEL, version, 80)
    for hour in range(4):
        _report_returns(version, hour, honest)
        check = _check(hour)
        assert check.evidence == SERVED
        outcome = _guard(check, hour)
        assert not outcome.drifted
        assert outcome.breaches == 0
    assert _alias(CHAMPION) == version
    tags = _tags(version)
    assert tags["rlops.drift.breaches"] == ""
    assert "over 80 episodes vs reference" in tags["rlops.drift.last_check"]
    assert "not entirely below" in tags["rlops.drift.last_check"]
    run = _run(check.mlflow_run_id)
    assert run.data.tags["rlops.drift"] == "none"
    assert run.data.tags["rlops.monitor.evidence"].startswith("served: 80 episodes")
    low, high = run.data.metrics["drift_difference_low"], run.data.metrics["drift_difference_high"]
    assert low < run.data.metrics["drift_difference"] < high
    reference = _run(check.reference_run_id).data.metrics["online_mean_return"]
    allowed = run.data.metrics["drift_allowed_difference"]
    assert high >= allowed == pytest.approx(-0.05 * abs(reference))
    assert "recheck_difference" not in run.data.metrics  # no breach, nothing to re-check


def test_served_evidence_alone_rolls_a_degraded_champion_back_after_two_breaches(
    mlflow_store,
) -> None:
    good = _crowned(seed=1)
    degraded = _crowned(seed=2)
    _report_returns(degraded, 0, honest_returns(MODEL, degraded, 80))
    assert not _guard(_check(0), 0, confirm=False).verdict.breach

    _report(degraded, 1, DEGRADED)
    first = _check(1)
    warned = _guard(first, 1, confirm=False)
    assert warned.verdict.breach
    assert (warned.breaches, warned.drifted) == (1, False)
    assert warned.action == "breach 1 of 2: no rollback yet"
    assert _guard(first, 1, confirm=False).breaches == 1  # a retried guard counts it once
    assert _alias(CHAMPION) == degraded

    _report(degraded, 2, DEGRADED)
    second = _check(2)
    outcome = _guard(second, 2, confirm=False)
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

    again = _guard(second, 2, confirm=False)  # retried after the rollback: nothing moves twice
    assert again.action == f"not rolled back: champion already moved to v{good}"
    assert _alias(CHAMPION) == good


def test_a_healthy_hour_resets_the_breaches(mlflow_store) -> None:
    _crowned(seed=1)
    version = _crowned(seed=2)
    honest = honest_returns(MODEL, version, 80)
    for hour, degraded in enumerate([False, True, False, True]):
        if degraded:
            _report(version, hour, DEGRADED)
        else:
            _report_returns(version, hour, honest)
        outcome = _guard(_check(hour), hour, confirm=False)
        assert not outcome.drifted
    assert outcome.breaches == 1
    assert _alias(CHAMPION) == version


def test_too_few_served_episodes_fall_back_to_the_simulator(mlflow_store) -> None:
    version = _crowned(seed=1)
    _report(version, 0, DEGRADED, n=EVIDENCE.min_served_episodes - 1)
    check = _check(0)
    assert check.evidence == SIMULATOR
    run = MlflowClient().get_run(check.mlflow_run_id)
    assert run.data.tags["rlops.monitor.evidence"] == (
        "simulator: 10 fresh episodes; 49 served episodes reported, fewer than 50"
    )
    assert run.data.metrics["online_mean_return"] == pytest.approx(check.online)


def test_a_drift_without_a_previous_champion_only_alerts(mlflow_store) -> None:
    only = _crowned(seed=1)
    for hour in range(2):
        _report(only, hour, DEGRADED)
        outcome = _guard(_check(hour), hour, confirm=False)
    assert outcome.drifted
    assert outcome.action == f"not rolled back: no previous champion, v{only} stays champion"
    assert _alias(CHAMPION) == only  # the alias is never deleted
    assert _tags(only)["rlops.drift.action"] == outcome.action


def test_a_champion_promoted_since_the_check_is_left_alone(mlflow_store) -> None:
    _crowned(seed=1)
    degraded = _crowned(seed=2)
    _report(degraded, 0, DEGRADED)
    _guard(_check(0), 0, confirm=False)
    _report(degraded, 1, DEGRADED)
    check = _check(1)
    newest = _crowned(seed=3)  # the nightly pipeline promoted meanwhile
    outcome = _guard(check, 1, confirm=False)
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
