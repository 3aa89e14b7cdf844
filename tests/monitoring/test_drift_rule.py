"""The drift rule on its own: what a breach is, and how breaches add up to a rollback."""

from __future__ import annotations

import numpy as np
import pytest

from rlops_airflow.drift import DriftRule, confirm, extend_streak, judge

SPREAD = np.random.default_rng(0).normal(0.0, 10.0, 400)
REFERENCE = -150.0 + SPREAD
"""A champion's reference: mean about -150, episodes spread by 10."""


def _online(shift: float, n: int = 200) -> np.ndarray:
    return REFERENCE[:n] + shift


@pytest.mark.parametrize(
    ("shift", "breach"),
    [(0.0, False), (-5.0, False), (-30.0, True), (+30.0, False)],
)
def test_a_breach_needs_the_whole_interval_below_the_tolerance(shift, breach) -> None:
    verdict = judge(_online(shift), REFERENCE, DriftRule(tolerance=0.05))
    assert verdict.breach is breach
    assert verdict.allowed == pytest.approx(-0.05 * abs(REFERENCE.mean()))
    assert verdict.difference.low < verdict.difference.mean < verdict.difference.high
    assert (verdict.difference.high < verdict.allowed) is breach


def test_the_interval_not_the_point_decides() -> None:
    """A mean 10 below (more than the 7.5 tolerance) on 5 episodes is not enough evidence."""
    few = judge(_online(-10.0, n=5), REFERENCE, DriftRule(tolerance=0.05))
    assert few.difference.mean < few.allowed
    assert not few.breach
    many = judge(_online(-10.0, n=400), REFERENCE, DriftRule(tolerance=0.0))
    assert many.breach


def test_a_higher_confidence_needs_more_evidence() -> None:
    online = _online(-9.0)
    assert judge(online, REFERENCE, DriftRule(tolerance=0.0, confidence=0.8)).breach
    assert not judge(online, REFERENCE, DriftRule(tolerance=0.05, confidence=0.999)).breach


def test_the_reason_quotes_the_figures() -> None:
    verdict = judge([-200.0, -210.0, -190.0], [-150.0, -160.0, -140.0], DriftRule(0.05))
    assert verdict.reason.startswith(
        "online mean return -200.00 over 3 episodes vs reference -150.00 over 3: difference -50.0 ["
    )
    assert verdict.reason.endswith("entirely below -7.50 (5% of the reference's magnitude)")


def test_positive_and_zero_references_take_the_magnitude() -> None:
    assert DriftRule(tolerance=0.1).allowed(90.0) == pytest.approx(-9.0)
    assert DriftRule(tolerance=0.1).allowed(-90.0) == pytest.approx(-9.0)
    assert str(DriftRule(tolerance=0.1).allowed(0.0)) == "0.0"


def test_breaches_add_up_and_a_healthy_check_resets_them() -> None:
    streak = extend_streak((), True, "run-1")
    assert streak == ("run-1",)
    streak = extend_streak(streak, True, "run-2")
    assert streak == ("run-1", "run-2")
    assert extend_streak(streak, True, "run-2") == streak  # a retry counts once
    assert extend_streak(streak, False, "run-3") == ()


def test_a_served_breach_counts_only_if_the_simulator_confirms_it() -> None:
    rule = DriftRule(tolerance=0.05)
    served = judge(_online(-30.0), REFERENCE, rule)
    assert served.breach
    confirmed = confirm(served, judge(_online(-30.0), REFERENCE, rule))
    assert confirmed.breach
    assert "the simulator re-check confirms it: online mean return" in confirmed.reason
    refuted = confirm(served, judge(_online(0.0), REFERENCE, rule))
    assert not refuted.breach
    assert refuted.reason.startswith(f"served: {served.reason}; the simulator re-check does not")
    assert refuted.difference == served.difference  # the served interval is still reported
    with pytest.raises(ValueError, match="only a served breach is confirmed"):
        confirm(judge(_online(0.0), REFERENCE, rule), served)
