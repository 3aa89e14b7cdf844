"""The promotion rule: when a candidate may become `champion`, and why not otherwise.

Pure logic, no I/O: `decide()` compares numbers and returns the decision with its reasons, so
it is tested exhaustively and the task that applies it stays short.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Thresholds:
    """The gate a candidate must pass (from the DAG run's params)."""

    min_reward: float
    min_speedup: float
    compare_with_champion: bool = True


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
    if candidate.reward < thresholds.min_reward:
        reasons.append(f"reward {candidate.reward:.1f} < {thresholds.min_reward:g}")
    if candidate.speedup < thresholds.min_speedup:
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
