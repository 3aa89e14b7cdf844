"""The drift rule: when a champion's online returns say it got worse, and when to act on it.

Pure logic, no I/O, so it is tested exhaustively and `benchmarks/decision_quality.py` replays
it on thousands of simulated checks.

A check compares two samples of episode returns, not two points: the online sample of this
check (served traffic or simulator episodes) and the champion's *reference* sample (simulator
episodes of its first check, much larger than the 10 registration episodes, whose own error
every later check would share; never served traffic, which whoever reports it could forge).
A check is a **breach** when the whole confidence interval of the difference of means
(online - reference) lies below `-tolerance * |reference mean|`: the champion is then shown
worse than itself by more than the tolerance. A breach on served traffic counts only once the
simulator re-check confirms it (`confirm`), unless the monitor is told to trust served
evidence alone. One breach is a warning; `breaches_to_rollback` consecutive breaches roll it
back (hysteresis), so one unlucky hour does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from rl_core.evaluation.confidence import Interval, unpaired_difference
from rlops_airflow.monitor_settings import DEFAULTS


@dataclass(frozen=True)
class DriftRule:
    """The guard's settings (the monitor DAG's params; defaults: its own)."""

    tolerance: float = DEFAULTS.drift_tolerance
    """The loss, as a fraction of the reference mean's magnitude, worth acting on."""
    confidence: float = DEFAULTS.confidence
    """Two-sided level of the interval of the difference."""
    breaches_to_rollback: int = DEFAULTS.breaches_to_rollback
    """Consecutive breaching checks that roll the champion back."""

    def allowed(self, reference_mean: float) -> float:
        """The lowest difference (online - reference) that is not a loss worth acting on."""
        return 0.0 - self.tolerance * abs(reference_mean)  # 0.0 - ...: never "-0.00" in text


@dataclass(frozen=True)
class DriftVerdict:
    """One check's comparison with the reference."""

    breach: bool
    difference: Interval
    allowed: float
    reason: str


def judge(online: Sequence[float], reference: Sequence[float], rule: DriftRule) -> DriftVerdict:
    """Whether this check's returns are, with confidence, worse than the reference's by more
    than the tolerance (see the module docstring)."""
    reference_mean = float(np.mean(reference))
    difference = unpaired_difference(online, reference, rule.confidence)
    allowed = rule.allowed(reference_mean)
    breach = difference.high < allowed
    reason = (
        f"online mean return {float(np.mean(online)):.2f} over {len(online)} episodes vs "
        f"reference {reference_mean:.2f} over {len(reference)}: difference {difference}, "
        f"{'entirely below' if breach else 'not entirely below'} {allowed:.2f} "
        f"({rule.tolerance:.0%} of the reference's magnitude)"
    )
    return DriftVerdict(breach, difference, allowed, reason)


def confirm(served: DriftVerdict, simulator: DriftVerdict) -> DriftVerdict:
    """A served-traffic breach after the simulator re-check: still a breach only if the
    version's fresh simulator episodes, judged by the same rule against the same reference,
    breach too. Served returns are what clients claim; forged ones can raise an alarm but not
    move an alias by themselves. The interval stays the served one; the reason quotes both."""
    if not served.breach:
        raise ValueError("only a served breach is confirmed: this served check is no breach")
    word = "confirms" if simulator.breach else "does not confirm"
    reason = f"served: {served.reason}; the simulator re-check {word} it: {simulator.reason}"
    return replace(served, breach=simulator.breach, reason=reason)


def extend_streak(streak: Sequence[str], breach: bool, check_key: str) -> tuple[str, ...]:
    """The consecutive breaching checks (keys, oldest first) after the check `check_key`: one
    more on a breach, none otherwise. A retried check is counted once."""
    if not breach:
        return ()
    if streak and streak[-1] == check_key:
        return tuple(streak)
    return (*streak, check_key)
