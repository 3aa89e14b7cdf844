"""The canary verdict: the rule on served returns, the simulator's say before a crowning,
and the task's effect on a real registry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from rlops_airflow.canary import (
    SIMULATOR_ARTIFACT,
    CanaryRule,
    agree,
    compare,
    judge_canary,
    simulator_comparison,
)
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitoring import CANARY_SEEDS, fresh_seeds
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelRegistry
from tests.monitoring.served import honest_returns, report_episodes, report_returns
from tests.serving.policies import register_policy

MODEL = "rlops-canary-test"
MOMENT = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
AIRFLOW = AirflowRun("rlops_champion_monitor", "manual__canary")
RULE = CanaryRule(min_episodes=50, episodes=20)
PROMOTE = replace(RULE, promote=True)


def _served(mean: float, n: int = 120, seed: int = 0) -> list[float]:
    return list(mean + np.random.default_rng(seed).normal(0.0, 10.0, n))


def test_too_little_traffic_concludes_nothing() -> None:
    verdict = compare(_served(-100.0, n=49), _served(-150.0), RULE, ("2", "1"))
    assert (verdict.passes, verdict.difference) == (False, None)
    assert verdict.reason == (
        "not enough served traffic: challenger v2 49 episodes, champion v1 120 (need 50 each)"
    )


@pytest.mark.parametrize(
    ("challenger_mean", "margin", "passes"),
    [(-100.0, 0.0, True), (-150.0, 0.0, False), (-153.0, 0.1, True), (-200.0, 0.1, False)],
)
def test_the_low_end_of_the_difference_decides(challenger_mean, margin, passes) -> None:
    rule = CanaryRule(noninferiority_margin=margin, min_episodes=50)
    verdict = compare(_served(challenger_mean, seed=1), _served(-150.0), rule, ("2", "1"))
    assert verdict.passes is passes
    allowed = -margin * abs(float(np.mean(_served(-150.0))))
    assert verdict.passes is (verdict.difference.low >= allowed)
    assert f"margin {margin:g} of the champion's magnitude" in verdict.reason


def test_the_simulator_comparison_is_the_promotion_rules_paired_one() -> None:
    champion = _served(-150.0, n=20)
    assert simulator_comparison(champion, champion, RULE, ("2", "1")).promote
    worse = [value - 30.0 for value in champion]  # 30 worse on every seed
    rejected = simulator_comparison(worse, champion, RULE, ("2", "1"))
    assert not rejected.promote
    (reason,) = rejected.reasons
    assert reason.startswith("return vs champion v1 (")
    assert "mean paired difference -30.0 [-30.0, -30.0]" in reason
    lenient = replace(RULE, noninferiority_margin=0.25)  # 30 is within 25% of ~150
    assert simulator_comparison(worse, champion, lenient, ("2", "1")).promote
    # paired: 1 better on each seed passes, though the seeds alone spread returns by 10
    better = [value + 1.0 for value in champion]
    assert simulator_comparison(better, champion, RULE, ("2", "1")).promote
    assert not compare(better, champion, replace(RULE, min_episodes=20), ("2", "1")).passes


def test_a_served_pass_needs_the_simulator_to_agree() -> None:
    served = compare(_served(-100.0, seed=1), _served(-150.0), RULE, ("2", "1"))
    champion = _served(-150.0, n=20)
    agreed = agree(served, simulator_comparison(champion, champion, RULE, ("2", "1")), 20)
    assert agreed.passes
    assert agreed.reason == (
        f"served: {served.reason}; the simulator agrees on 20 fresh paired episodes"
    )
    worse = simulator_comparison([v - 30.0 for v in champion], champion, RULE, ("2", "1"))
    disagreed = agree(served, worse, 20)
    assert not disagreed.passes
    assert disagreed.difference == served.difference
    assert disagreed.reason == (
        f"served: {served.reason}; the simulator disagrees on 20 fresh paired episodes: "
        f"{worse.reasons[0]}"
    )
    failed = compare(_served(-200.0, seed=1), _served(-150.0), RULE, ("2", "1"))
    with pytest.raises(ValueError, match="only a passing served verdict"):
        agree(failed, worse, 20)


def _setup(gates: str = "passed") -> tuple[str, str]:
    """A champion and a challenger that is the same actor (as good in the simulator), doing
    better on served traffic."""
    registry = ModelRegistry(MODEL)
    champion = register_policy(MODEL, reward=-150.0, seed=1)
    registry.crown(champion)
    challenger = register_policy(MODEL, reward=-100.0, seed=1)
    registry.set_alias(CHALLENGER, challenger)
    registry.set_tags(challenger, {tags.REWARD_GATE: gates, tags.SPEEDUP_GATE: "passed"})
    received = MOMENT - timedelta(minutes=10)
    report_episodes(MODEL, champion, received, -150.0, n=120)
    report_episodes(MODEL, challenger, received, -100.0, n=120, seed=1)
    return champion, challenger


def test_a_better_challenger_is_reported_not_promoted_by_default(mlflow_store) -> None:
    champion, challenger = _setup()
    verdict = judge_canary(MODEL, RULE, MOMENT, AIRFLOW)
    assert (verdict.passes, verdict.action) == (True, "none")
    registry = ModelRegistry(MODEL)
    assert str(registry.alias(CHAMPION).version) == champion
    recorded = registry.version(challenger).tags
    assert recorded[tags.CANARY_VERDICT] == f"{verdict.reason}; none"
    assert recorded[tags.CANARY_RUN]
    assert judge_canary(MODEL, RULE, MOMENT, AIRFLOW).reason == verdict.reason  # retry


def test_promotion_on_canary_evidence_when_asked(mlflow_store) -> None:
    """Crowned: as good in the simulator (the same actor) and better in served traffic."""
    champion, challenger = _setup()
    verdict = judge_canary(MODEL, PROMOTE, MOMENT, AIRFLOW)
    assert verdict.action == f"promoted: v{challenger} is champion, v{champion} previous"
    assert verdict.reason.endswith("; the simulator agrees on 20 fresh paired episodes")
    registry = ModelRegistry(MODEL)
    assert str(registry.alias(CHAMPION).version) == challenger
    assert registry.version(challenger).tags[tags.PROMOTION] == "promoted by canary"
    run = registry.version(challenger).tags[tags.CANARY_RUN]
    played = mlflow.artifacts.load_dict(f"runs:/{run}/{SIMULATOR_ARTIFACT}")
    assert played["seeds"] == fresh_seeds(MOMENT, 20, CANARY_SEEDS)
    assert played["challenger"] == played["champion"]
    assert judge_canary(MODEL, PROMOTE, MOMENT, AIRFLOW) is None  # retried: crowned already
    assert str(registry.alias(PREVIOUS_CHAMPION).version) == champion


def test_forged_reports_do_not_crown_a_challenger_worse_in_the_simulator(mlflow_store) -> None:
    """Canary forging: 151 reports of -100 for a challenger whose actor does worse in the
    simulator than the champion's, against the champion's honest traffic."""
    registry = ModelRegistry(MODEL)
    champion = register_policy(MODEL, reward=-1400.0, seed=2)
    registry.crown(champion)
    challenger = register_policy(MODEL, reward=-1400.0, seed=0)
    registry.set_alias(CHALLENGER, challenger)
    registry.set_tags(challenger, {tags.REWARD_GATE: "passed", tags.SPEEDUP_GATE: "passed"})
    received = MOMENT - timedelta(minutes=10)
    report_returns(MODEL, champion, received, honest_returns(MODEL, champion, 120))
    report_returns(MODEL, challenger, received, [-100.0] * 151)

    verdict = judge_canary(MODEL, PROMOTE, MOMENT, AIRFLOW)
    assert (verdict.passes, verdict.action) == (False, "not promoted: the simulator disagrees")
    assert verdict.reason.startswith(f"served: challenger v{challenger} -100.00 over 151 served")
    assert "; the simulator disagrees on 20 fresh paired episodes: return vs champion v" in (
        verdict.reason
    )
    assert str(registry.alias(CHAMPION).version) == champion
    assert registry.version(challenger).tags[tags.CANARY_VERDICT] == (
        f"{verdict.reason}; {verdict.action}"
    )
    assert judge_canary(MODEL, PROMOTE, MOMENT, AIRFLOW) == verdict  # retried: the same
    experiment = MlflowClient().get_experiment_by_name("rlops-monitoring").experiment_id
    assert len(MlflowClient().search_runs([experiment])) == 1

    trusting = replace(PROMOTE, confirm_with_simulator=False)  # served evidence alone crowns
    other_run = AirflowRun("rlops_champion_monitor", "manual__trusting")
    crowned = judge_canary(MODEL, trusting, MOMENT, other_run)
    assert crowned.action == f"promoted: v{challenger} is champion, v{champion} previous"
    assert str(registry.alias(CHAMPION).version) == challenger


def test_a_challenger_that_failed_its_gate_is_never_promoted(mlflow_store) -> None:
    champion, _ = _setup(gates="failed")
    verdict = judge_canary(MODEL, PROMOTE, MOMENT, AIRFLOW)
    assert verdict.passes
    assert verdict.action == f"not promoted: gate {tags.REWARD_GATE} did not pass"
    assert str(ModelRegistry(MODEL).alias(CHAMPION).version) == champion


def test_no_distinct_challenger_no_verdict(mlflow_store) -> None:
    registry = ModelRegistry(MODEL)
    only = register_policy(MODEL, reward=-150.0, seed=1)
    registry.crown(only)
    registry.set_alias(CHALLENGER, only)
    assert judge_canary(MODEL, RULE, MOMENT, AIRFLOW) is None
