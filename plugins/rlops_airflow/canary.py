"""The canary verdict: on the traffic the policy server sent each of them, is the challenger at
least as good as the champion?

The server sends a fraction of episodes to the `challenger` version (its canary settings) and
clients report every episode's return (`POST /v1/episodes`). Here the two versions' served
returns of the last window are compared as the gate compares on eval seeds, with the same
confidence level and non-inferiority margin: the challenger passes when the low end of the
interval of the difference of means (challenger - champion) is at least
`-margin * |champion's mean|`. The samples are different episodes, so the interval is the
unpaired one (`rl_core.evaluation.confidence.unpaired_difference`). The verdict is logged as a run
in the monitoring experiment and tagged on the challenger. Promotion on a passing verdict is opt-in
(`promote_on_canary`), and only for a challenger whose reward and speedup gates passed.

Served returns are what clients claim, so by default (`confirm_with_simulator`) a crowning
also needs the simulator to agree: challenger and champion play the same fresh simulator
seeds and the pipeline's promotion rule (`rlops_airflow.promotion.decide`: paired interval,
same confidence and margin) must pass too; the verdict says which of the two disagreed.
Without it, served evidence crowns alone: the policy server only counts authenticated,
ticketed reports, but a client holding a report key can still lie within the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric

from rl_core.evaluation.confidence import Interval, unpaired_difference
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitor_settings import DEFAULTS
from rlops_airflow.monitoring import CANARY_SEEDS, fresh_seeds, millis, monitoring_run, simulate
from rlops_airflow.promotion import Candidate, ChampionScore, Decision, Thresholds, decide
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from rlops_registry.served_episodes import served_returns

PASSED = "passed"
SIMULATOR_ARTIFACT = "monitoring/canary_simulator.json"


@dataclass(frozen=True)
class CanaryRule:
    """The canary's settings (the monitor DAG's params; defaults: its own)."""

    confidence: float = DEFAULTS.confidence
    noninferiority_margin: float = DEFAULTS.noninferiority_margin
    min_episodes: int = DEFAULTS.min_served_episodes
    """Served episodes each version needs in the window before anything is concluded."""
    window: timedelta = DEFAULTS.window
    promote: bool = DEFAULTS.promote_on_canary
    """Crown a challenger whose verdict passes (and whose gates passed)."""
    confirm_with_simulator: bool = DEFAULTS.confirm_with_simulator
    """A crowning also needs the simulator comparison to pass (False: served evidence alone)."""
    episodes: int = DEFAULTS.episodes
    """Fresh simulator seeds both versions play for that comparison."""


@dataclass(frozen=True)
class CanaryVerdict:
    challenger: str
    champion: str
    difference: Interval | None
    """None when either version has too few served episodes."""
    passes: bool
    reason: str
    action: str = "none"


def compare(
    challenger: list[float], champion: list[float], rule: CanaryRule, versions: tuple[str, str]
) -> CanaryVerdict:
    """The verdict on two samples of served returns (pure: no I/O)."""
    mine, theirs = versions
    if min(len(challenger), len(champion)) < rule.min_episodes:
        reason = (
            f"not enough served traffic: challenger v{mine} {len(challenger)} episodes, "
            f"champion v{theirs} {len(champion)} (need {rule.min_episodes} each)"
        )
        return CanaryVerdict(mine, theirs, None, False, reason)
    champion_mean = float(np.mean(champion))
    difference = unpaired_difference(challenger, champion, rule.confidence)
    allowed = 0.0 - rule.noninferiority_margin * abs(champion_mean)
    passes = difference.low >= allowed
    reason = (
        f"challenger v{mine} {float(np.mean(challenger)):.2f} over {len(challenger)} served "
        f"episodes vs champion v{theirs} {champion_mean:.2f} over {len(champion)}: difference "
        f"{difference}, low end {'at or above' if passes else 'below'} {allowed:.2f} "
        f"(margin {rule.noninferiority_margin:g} of the champion's magnitude)"
    )
    return CanaryVerdict(mine, theirs, difference, passes, reason)


def simulator_comparison(
    challenger: list[float], champion: list[float], rule: CanaryRule, versions: tuple[str, str]
) -> Decision:
    """The promotion rule's champion comparison on returns of both versions on the same
    simulator seeds, in seed order (pure: no I/O). Only that comparison: the reward and speedup
    gates were decided at registration and are checked on their tags."""
    comparison_only = Thresholds(
        min_reward=-math.inf,
        min_speedup=0.0,
        confidence=rule.confidence,
        noninferiority_margin=rule.noninferiority_margin,
    )
    mine, theirs = versions
    return decide(
        Candidate(mine, challenger, speedup=1.0), comparison_only, ChampionScore(theirs, champion)
    )


def agree(served: CanaryVerdict, simulator: Decision, episodes: int) -> CanaryVerdict:
    """The verdict on a served pass once the simulator comparison is in: it passes only if
    the simulator agrees, and the reason says so either way (pure: no I/O)."""
    if not served.passes:
        raise ValueError("only a passing served verdict needs the simulator to agree")
    said = (
        f"the simulator agrees on {episodes} fresh paired episodes"
        if simulator.promote
        else f"the simulator disagrees on {episodes} fresh paired episodes: "
        + "; ".join(simulator.reasons)
    )
    return replace(served, passes=simulator.promote, reason=f"served: {served.reason}; {said}")


def judge_canary(
    model_name: str, rule: CanaryRule, moment: datetime, airflow: AirflowRun
) -> CanaryVerdict | None:
    """Compare challenger and champion on their served returns in the window before `moment`,
    log the verdict, and promote on it if asked (None: no challenger distinct from champion)."""
    registry = ModelRegistry(model_name)
    champion, challenger = registry.alias(CHAMPION), registry.alias(CHALLENGER)
    if champion is None or challenger is None or champion.version == challenger.version:
        return None
    since, until = millis(moment - rule.window), millis(moment)
    versions = (str(challenger.version), str(champion.version))
    verdict = compare(
        *(served_returns(model_name, v, since, until) for v in versions), rule, versions
    )
    client = MlflowClient()
    run_id = monitoring_run(client, model_name, verdict.challenger, "canary", airflow)
    if verdict.difference is not None:
        now = millis(datetime.now(UTC))
        client.log_batch(
            run_id,
            metrics=[
                Metric("canary_difference", verdict.difference.mean, now, 0),
                Metric("canary_difference_low", verdict.difference.low, now, 0),
                Metric("canary_difference_high", verdict.difference.high, now, 0),
            ],
        )
    if verdict.passes and rule.promote:
        verdict = _promoted(registry, challenger.tags, verdict, rule, moment, run_id)
    client.set_tag(run_id, tags.CANARY_VERDICT, f"{verdict.reason}; {verdict.action}")
    registry.set_tags(
        verdict.challenger,
        {tags.CANARY_VERDICT: f"{verdict.reason}; {verdict.action}", tags.CANARY_RUN: run_id},
    )
    return verdict


def _promoted(
    registry: ModelRegistry,
    challenger_tags: dict[str, str],
    verdict: CanaryVerdict,
    rule: CanaryRule,
    moment: datetime,
    run_id: str,
) -> CanaryVerdict:
    """Crown the challenger of a passing served verdict if its gates passed and, when asked,
    the simulator agrees (checked after the gates: they cost nothing)."""
    gates = {name: challenger_tags.get(name) for name in (tags.REWARD_GATE, tags.SPEEDUP_GATE)}
    failed = [name for name, result in gates.items() if result != PASSED]
    if failed:
        return replace(verdict, action=f"not promoted: gate {', '.join(failed)} did not pass")
    if rule.confirm_with_simulator:
        decision = _simulated(registry.name, verdict, rule, moment, run_id)
        verdict = agree(verdict, decision, rule.episodes)
        if not verdict.passes:
            return replace(verdict, action="not promoted: the simulator disagrees")
    registry.crown(verdict.challenger)
    registry.set_tags(verdict.challenger, {tags.PROMOTION: "promoted by canary"})
    action = f"promoted: v{verdict.challenger} is champion, v{verdict.champion} previous"
    return replace(verdict, action=action)


def _simulated(
    model_name: str, verdict: CanaryVerdict, rule: CanaryRule, moment: datetime, run_id: str
) -> Decision:
    """Both versions on the same fresh simulator seeds (from `moment`: a retry replays them),
    logged on the canary run, and the promotion rule's comparison of them."""
    seeds = fresh_seeds(moment, rule.episodes, CANARY_SEEDS)
    versions = (verdict.challenger, verdict.champion)
    challenger, champion = (simulate(model_name, version, seeds) for version in versions)
    client = MlflowClient()
    now = millis(datetime.now(UTC))
    client.log_batch(
        run_id,
        metrics=[
            Metric("canary_simulator_challenger_mean", float(np.mean(challenger)), now, 0),
            Metric("canary_simulator_champion_mean", float(np.mean(champion)), now, 0),
        ],
    )
    returns = {"seeds": seeds, "challenger": challenger, "champion": champion}
    client.log_dict(run_id, returns, SIMULATOR_ARTIFACT)
    return simulator_comparison(challenger, champion, rule, versions)
