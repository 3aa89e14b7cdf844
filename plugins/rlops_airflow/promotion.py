"""The promotion rule: when a candidate may become `champion`, and why not otherwise.

Pure logic, no I/O: `decide()` compares numbers and returns the decision with its reasons, so
it is tested exhaustively and the task that applies it stays short.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Thresholds:
    """The gate a candidate must pass (from the DAG run's params).

    Every task that states a gate verdict (evaluate, register, promote) asks these methods,
    so a verdict shown early can never disagree with the decision taken at the end.
    """

    min_reward: float
    min_speedup: float
    compare_with_champion: bool = True

    def reward_passes(self, reward: float) -> bool:
        return reward >= self.min_reward

    def speedup_passes(self, speedup: float) -> bool:
        return speedup >= self.min_speedup


@dataclass(frozen=True)
class Candidate:
    """What the earlier tasks measured for one registered version."""

    version: str
    reward: float
    """Mean deterministic return on the run's eval seeds."""
    speedup: float
    """Eager vs exported median latency at batch 1."""


@dataclass(frozen=True)
class ChampionScore:
    """The current champion's return on the candidate's eval seeds."""

    version: str
    reward: float


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
    """Promote only if reward and speedup pass and, when asked, the champion is not better."""
    reasons = []
    if not thresholds.reward_passes(candidate.reward):
        reasons.append(f"reward {candidate.reward:.1f} < {thresholds.min_reward:g}")
    if not thresholds.speedup_passes(candidate.speedup):
        reasons.append(f"speedup x{candidate.speedup:.2f} < x{thresholds.min_speedup:g}")
    if (
        thresholds.compare_with_champion
        and champion is not None
        and champion.version != candidate.version
        and candidate.reward < champion.reward
    ):
        reasons.append(
            f"reward {candidate.reward:.1f} < champion v{champion.version} {champion.reward:.1f}"
        )
    return Decision(promote=not reasons, reasons=reasons)
