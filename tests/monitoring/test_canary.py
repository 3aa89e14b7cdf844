"""The canary verdict: the rule on served returns, and the task's effect on a real registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from rlops_airflow.canary import CanaryRule, compare, judge_canary
from rlops_airflow.mlflow_run import AirflowRun
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from tests.monitoring.served import report_episodes
from tests.serving.policies import register_policy

MODEL = "rlops-canary-test"
MOMENT = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
AIRFLOW = AirflowRun("rlops_champion_monitor", "manual__canary")
RULE = CanaryRule(min_episodes=50)


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


def _setup(gates: str = "passed") -> tuple[str, str]:
    registry = ModelRegistry(MODEL)
    champion = register_policy(MODEL, reward=-150.0, seed=1)
    registry.crown(champion)
    challenger = register_policy(MODEL, reward=-100.0, seed=2)
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
    champion, challenger = _setup()
    verdict = judge_canary(MODEL, CanaryRule(min_episodes=50, promote=True), MOMENT, AIRFLOW)
    assert verdict.action == f"promoted: v{challenger} is champion, v{champion} previous"
    registry = ModelRegistry(MODEL)
    assert str(registry.alias(CHAMPION).version) == challenger
    assert registry.version(challenger).tags[tags.PROMOTION] == "promoted by canary"


def test_a_challenger_that_failed_its_gate_is_never_promoted(mlflow_store) -> None:
    champion, _ = _setup(gates="failed")
    verdict = judge_canary(MODEL, CanaryRule(min_episodes=50, promote=True), MOMENT, AIRFLOW)
    assert verdict.passes
    assert verdict.action == f"not promoted: gate {tags.REWARD_GATE} did not pass"
    assert str(ModelRegistry(MODEL).alias(CHAMPION).version) == champion


def test_no_distinct_challenger_no_verdict(mlflow_store) -> None:
    registry = ModelRegistry(MODEL)
    only = register_policy(MODEL, reward=-150.0, seed=1)
    registry.crown(only)
    registry.set_alias(CHALLENGER, only)
    assert judge_canary(MODEL, RULE, MOMENT, AIRFLOW) is None
