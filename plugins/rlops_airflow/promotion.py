"""The promotion rule: when a candidate may become `champion`, and why not otherwise.

Pure logic, no I/O: `decide()` compares numbers and returns the decision with its reasons, so
it is tested exhaustively and the task that applies it stays short.

Against the champion the rule is a test on paired episodes: both policies play the same env
seeds, and the candidate may replace the champion only if the lower end of the confidence
interval of the mean difference (candidate - champion) is at least
`-noninferiority_margin * |champion's mean|` (by default 0: shown at least as good). A
point comparison of two 10-episode means would let chance decide; the interval says how much
evidence there is, and the rejection quotes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rl_core.evaluation.confidence import Interval, mean_interval, paired_difference


@dataclass(frozen=True)
class Thresholds:
    """The gate a candidate must pass (from the DAG run's params).

    Every task that states a gate verdict (evaluate, register, promote) asks these methods,
    so a verdict shown early can never disagree with the decision taken at the end.
    """

    min_reward: float
    min_speedup: float
    compare_with_champion: bool = True
    confidence: float = 0.95
    """Two-sided confidence level of the intervals the rule quotes and decides on."""
    noninferiority_margin: float = 0.0
    """How much worse than the champion, as a fraction of the magnitude of its mean return,
    the candidate may be at the low end of the interval. 0: it must be shown at least as
    good (benchmarks/decision_quality.py: an equal retrain then replaces the champion on 0.4%
    of eval-seed blocks instead of 19%, and a clearly better policy still on 100%)."""

    def champion_margin(self, champion_mean: float) -> float:
        """The allowed shortfall against a champion with this mean return (return units)."""
        return self.noninferiority_margin * abs(champion_mean)

    def reward_passes(self, reward: float) -> bool:
        return reward >= self.min_reward

    def speedup_passes(self, speedup: float) -> bool:
        return speedup >= self.min_speedup


@dataclass(frozen=True)
class Candidate:
    """What the earlier tasks measured for one registered version."""

    version: str
    returns: Sequence[float]
    """Deterministic return of each episode, one per eval seed, in seed order."""
    speedup: float
    """Eager vs exported median latency at batch 1."""

    @property
    def reward(self) -> float:
        """Mean return on the eval seeds: the figure the reward gate compares, computed as
        `evaluate` computes it, so its verdict and this one agree to the last bit."""
        return _mean(self.returns)


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's episode returns on the candidate's eval seeds, in seed order."""

    version: str
    returns: Sequence[float]


@dataclass(frozen=True)
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """ "promoted" or "rejected: <reason>; <reason>" (what logs, XCom and tags show)."""
        return "promoted" if self.promote else "rejected: " + "; ".join(self.reasons)


def decide(
    candidate: Candidate, thresholds: Thresholds, champion: ChampionScore | None
) -> Decision:
    """Promote only if reward and speedup pass and, when asked, the candidate is shown not
    worse than the champion by more than the margin (paired interval, see the module doc)."""
    reasons = []
    if not thresholds.reward_passes(candidate.reward):
        interval = reward_interval(candidate.returns, thresholds.confidence)
        reasons.append(f"reward {interval} < {thresholds.min_reward:g}")
    if not thresholds.speedup_passes(candidate.speedup):
        reasons.append(f"speedup x{candidate.speedup:.2f} < x{thresholds.min_speedup:g}")
    if (
        thresholds.compare_with_champion
        and champion is not None
        and champion.version != candidate.version
    ):
        difference = paired_difference(candidate.returns, champion.returns, thresholds.confidence)
        champion_mean = _mean(champion.returns)
        allowed = 0.0 - thresholds.champion_margin(champion_mean)  # never "-0.0" in the text
        if difference.low < allowed:
            reasons.append(
                f"return vs champion v{champion.version} ({champion_mean:.1f}): mean paired "
                f"difference {difference}, low end below {allowed:.1f} "
                f"(margin {thresholds.noninferiority_margin:g} of its magnitude)"
            )
    return Decision(promote=not reasons, reasons=reasons)


def _mean(returns: Sequence[float]) -> float:
    return float(np.asarray(returns, dtype=np.float64).mean())


def reward_interval(returns: Sequence[float], confidence: float) -> Interval:
    """The reward gate's figure as it is stated: mean return and its interval."""
    return mean_interval(returns, confidence)
