"""Online monitoring of the champion, and the drift guard that rolls it back.

Each check gathers the champion's online returns from one of two kinds of evidence, and says
which it used:

- **served**: the episodes clients reported to the policy server for that version in the
  hour before the check (`rlops_registry.served_episodes`), when there are at least
  `min_served_episodes` of them: what the served policy actually experienced;
- **simulator**: otherwise, deterministic episodes of the version, loaded by the policy
  server's own loader, on fresh env seeds drawn from the DAG run's date (a retry replays the
  same episodes, no two hours share them).

A check is one MLflow run in the monitoring experiment (found again on a retry, never made
twice), holding the returns (`monitoring/returns.json`), the mean, and then the guard's
statistic and interval; the version gets `rlops.online_return` (which the policy server
exports to Prometheus).

Every check is compared with the version's *simulator reference*
(`rlops.drift.reference.simulator`): `reference_episodes` simulator episodes, recorded by its
first simulator check, or, when its first check is on served traffic, by a run of its own made
just before it (found again on a retry). Never served traffic: a client that reports the first
served hour would otherwise choose what "healthy" means, and every later honest hour would be
a breach.

The rule itself is `rlops_airflow.drift`. A breach on served traffic is re-checked in the
simulator (`SimulatorRecheck`: `episodes` fresh episodes, logged on the check's run) and counts
only if the simulator confirms it; an unconfirmed one is tagged and logged, and moves nothing.
Without the re-check (`confirm_with_simulator` off, for a real world the simulator does not
model) served evidence acts alone: the policy server only counts authenticated, ticketed
reports, but a client holding a report key can still lie within the bounds. After
`breaches_to_rollback` consecutive (confirmed) breaches the guard moves `champion` back to
`previous_champion` and tags both versions with the reason and time; with no previous champion
it changes no alias and only alerts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric

from rl_core.common.tracking import get_or_create_experiment
from rl_core.evaluation.episodes import evaluate
from rlops_airflow.drift import DriftRule, DriftVerdict, confirm, extend_streak, judge
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.monitor_settings import DEFAULTS
from rlops_airflow.settings import artifact_location
from rlops_registry import tags
from rlops_registry.registry import CHAMPION, ModelRegistry, NoPreviousChampion
from rlops_registry.served_episodes import served_returns
from rlops_serving.policy import load_policy

MONITORING_EXPERIMENT_ENV = "RLOPS_MONITORING_EXPERIMENT"
DEFAULT_MONITORING_EXPERIMENT = "rlops-monitoring"
RETURNS_ARTIFACT = "monitoring/returns.json"
RECHECK_ARTIFACT = "monitoring/simulator_recheck.json"
SERVED, SIMULATOR = "served", "simulator"
REFERENCE_TAG = tags.DRIFT_REFERENCE_PREFIX + SIMULATOR
"""The version's one reference: a simulator sample, whatever evidence its checks use."""
UNCONFIRMED = "unconfirmed"
"""A check run's `rlops.drift` when the simulator did not confirm its served breach."""
CHECK_SEEDS, REFERENCE_SEEDS, CANARY_SEEDS = 0, 1, 2
"""Streams of `fresh_seeds`: samples drawn in the same hour never share episodes (a served
check's reference and its re-check are compared with each other). A check and a re-check
are never both simulated in one hour, so they share a stream."""


@dataclass(frozen=True)
class Evidence:
    """Where a check takes its returns from (the monitor DAG's params; defaults: its own)."""

    episodes: int = DEFAULTS.episodes
    """Simulator episodes per check."""
    reference_episodes: int = DEFAULTS.reference_episodes
    """Simulator episodes of a version's reference."""
    min_served_episodes: int = DEFAULTS.min_served_episodes
    """Served episodes in the window needed to judge on served traffic instead."""
    window: timedelta = DEFAULTS.window
    """How far back from the check served episodes count."""


@dataclass(frozen=True)
class SimulatorRecheck:
    """How the guard re-checks a served breach in the simulator before it counts it."""

    episodes: int
    moment: datetime
    """When the check was due: the re-check's seeds come from it (a retry replays them)."""


@dataclass(frozen=True)
class OnlineCheck:
    """One check of the champion (what the guard task gets via XCom: ids and a few numbers)."""

    model_name: str
    version: str
    evidence: str
    """"served" or "simulator"."""
    online: float
    episodes: int
    mlflow_run_id: str
    reference_run_id: str | None
    """The simulator reference this check is compared with; None when this check is it."""
    check_key: str
    """The Airflow run that made the check: a retried check counts once towards a rollback."""


@dataclass(frozen=True)
class GuardOutcome:
    verdict: DriftVerdict | None
    """None when the check recorded the reference instead of being judged; after a simulator
    re-check, the confirmed verdict (`drift.confirm`)."""
    unconfirmed: bool
    """A served breach the simulator re-check did not confirm: alerted, not counted."""
    breaches: int
    """Consecutive breaches, this check included."""
    drifted: bool
    """As many consecutive breaches as the rule needs to roll back."""
    action: str
    """What the guard did: "none", "rolled back to v1", or why it could not."""

    @property
    def reason(self) -> str:
        if self.verdict is None:
            return "reference recorded"
        if self.drifted:
            return f"{self.breaches} consecutive breaches, the last: {self.verdict.reason}"
        return self.verdict.reason

    @property
    def message(self) -> str:
        return f"{self.reason}; {self.action}"


def fresh_seeds(moment: datetime, n: int, stream: int = CHECK_SEEDS) -> list[int]:
    """`n` env seeds derived from `moment` and `stream`: the same for a retry, new for every
    other check and for every other stream."""
    sequence = np.random.SeedSequence(int(moment.timestamp()), spawn_key=(stream,))
    return [int(seed) for seed in sequence.generate_state(n)]


def simulate(model_name: str, version: str, seeds: list[int]) -> list[float]:
    """Deterministic returns of the version on `seeds`, one episode each, played by the policy
    server's own loader (so what the simulator judges is what is served)."""
    policy = load_policy(model_name, version)

    def act(observation: np.ndarray) -> np.ndarray:
        return np.asarray(policy.act([observation.tolist()])[0], dtype=np.float32)

    return evaluate(act, policy.env, seeds).returns


def check_champion(
    model_name: str, evidence: Evidence, moment: datetime, airflow: AirflowRun
) -> OnlineCheck | None:
    """Gather the champion's online returns, log them as a check run (None: no champion)."""
    registry = ModelRegistry(model_name)
    champion = registry.alias(CHAMPION)
    if champion is None:
        return None
    version = str(champion.version)
    client = MlflowClient()
    run_id = monitoring_run(client, model_name, version, "drift", airflow)
    reference = champion.tags.get(REFERENCE_TAG)
    if reference == run_id:  # a retry of the check that recorded it
        reference = None
    served = served_returns(model_name, version, millis(moment - evidence.window), millis(moment))
    if len(served) >= evidence.min_served_episodes:
        kind, returns, seeds = SERVED, served, None
        detail = (
            f"served: {len(served)} episodes reported to the policy server in the "
            f"{evidence.window} before {moment.isoformat(timespec='minutes')}"
        )
        if reference is None:
            reference = _simulator_reference(client, registry, version, evidence, moment, airflow)
    else:
        kind = SIMULATOR
        episodes = evidence.reference_episodes if reference is None else evidence.episodes
        seeds = fresh_seeds(moment, episodes)
        returns = simulate(model_name, version, seeds)
        detail = (
            f"simulator: {episodes} fresh episodes; {len(served)} served episodes reported, "
            f"fewer than {evidence.min_served_episodes}"
        )
    online = _log_returns(client, run_id, kind, seeds, returns, detail)
    if reference is None:
        registry.set_tags(version, {REFERENCE_TAG: run_id})
    registry.set_tags(
        version,
        {
            tags.ONLINE_RETURN: f"{online:.4f}",
            tags.ONLINE_CHECKED_AT: _now(),
            tags.ONLINE_RUN: run_id,
        },
    )
    return OnlineCheck(
        model_name, version, kind, online, len(returns), run_id, reference, airflow.key
    )


def _simulator_reference(
    client: MlflowClient,
    registry: ModelRegistry,
    version: str,
    evidence: Evidence,
    moment: datetime,
    airflow: AirflowRun,
) -> str:
    """Record the version's simulator reference for a served check that finds none, as a run
    of its own (a retry finds it again and replays the same seeds): served traffic is compared
    with what the version does in the simulator, never with earlier served traffic."""
    run_id = monitoring_run(client, registry.name, version, "reference", airflow)
    seeds = fresh_seeds(moment, evidence.reference_episodes, REFERENCE_SEEDS)
    returns = simulate(registry.name, version, seeds)
    detail = f"simulator: {len(seeds)} fresh episodes, the reference of v{version}'s checks"
    _log_returns(client, run_id, SIMULATOR, seeds, returns, detail)
    client.set_tag(run_id, tags.DRIFT_VERDICT, "reference")
    registry.set_tags(version, {REFERENCE_TAG: run_id})
    return run_id


def _log_returns(
    client: MlflowClient,
    run_id: str,
    kind: str,
    seeds: list[int] | None,
    returns: list[float],
    detail: str,
) -> float:
    """Log a sample of returns on its monitoring run (overwritten alike on a retry); returns
    its mean."""
    online = float(np.mean(returns))
    now = millis(datetime.now(UTC))
    client.log_batch(
        run_id,
        metrics=[
            Metric("online_mean_return", online, now, 0),
            Metric("online_std_return", float(np.std(returns)), now, 0),
            Metric("online_episodes", float(len(returns)), now, 0),
        ],
    )
    client.set_tag(run_id, tags.MONITOR_EVIDENCE, detail)
    client.log_dict(
        run_id, {"evidence": kind, "seeds": seeds, "returns": list(returns)}, RETURNS_ARTIFACT
    )
    return online


def guard(check: OnlineCheck, rule: DriftRule, recheck: SimulatorRecheck | None) -> GuardOutcome:
    """Judge the check against the reference; re-check a served breach in the simulator
    (`recheck`; None: served evidence acts alone); after enough consecutive (confirmed)
    breaches roll `champion` back, if it still is the checked version."""
    client = MlflowClient()
    registry = ModelRegistry(check.model_name)
    if check.reference_run_id is None:
        client.set_tag(check.mlflow_run_id, tags.DRIFT_VERDICT, "reference")
        action = f"none: this check is v{check.version}'s simulator reference"
        return GuardOutcome(None, False, 0, False, action)
    reference = _returns(check.reference_run_id)
    verdict = judge(_returns(check.mlflow_run_id), reference, rule)
    _log_verdict(client, check.mlflow_run_id, "drift", verdict)
    unconfirmed = False
    if verdict.breach and check.evidence == SERVED and recheck is not None:
        simulated = judge(_recheck(client, check, recheck), reference, rule)
        _log_verdict(client, check.mlflow_run_id, "recheck", simulated)
        verdict = confirm(verdict, simulated)
        unconfirmed = not verdict.breach
    outcome = UNCONFIRMED if unconfirmed else "breach" if verdict.breach else "none"
    client.set_tag(check.mlflow_run_id, tags.DRIFT_VERDICT, outcome)
    client.set_tag(check.mlflow_run_id, tags.DRIFT_CHECK, verdict.reason)
    before = registry.version(check.version).tags.get(tags.DRIFT_BREACHES, "")
    streak = extend_streak(before.split(), verdict.breach, check.check_key)
    registry.set_tags(
        check.version, {tags.DRIFT_BREACHES: " ".join(streak), tags.DRIFT_CHECK: verdict.reason}
    )
    needed = rule.breaches_to_rollback
    if len(streak) < needed:
        if unconfirmed:
            action = "none: the simulator did not confirm the served breach"
        else:
            action = "none" if not streak else f"breach {len(streak)} of {needed}: no rollback yet"
        return GuardOutcome(verdict, unconfirmed, len(streak), False, action)
    drifted = GuardOutcome(verdict, False, len(streak), True, "")
    action = _roll_back(registry, check, drifted.reason)
    client.set_tag(check.mlflow_run_id, tags.DRIFT_ACTION, action)
    return replace(drifted, action=action)


def _roll_back(registry: ModelRegistry, check: OnlineCheck, reason: str) -> str:
    """Move `champion` back if it still is the checked version; says what was done."""
    when = _now()
    current = registry.alias(CHAMPION)
    if current is None or str(current.version) != check.version:
        # A newer promotion (or an earlier attempt of this task) moved it already.
        where = f"v{current.version}" if current else "nowhere"
        action = f"not rolled back: champion already moved to {where}"
    else:
        try:
            restored = registry.rollback()
        except NoPreviousChampion:
            action = f"not rolled back: no previous champion, v{check.version} stays champion"
        else:
            action = f"rolled back to v{restored.version}"
            registry.set_tags(
                restored.version,
                {
                    tags.ROLLBACK_REASON: f"champion again because v{check.version}: {reason}",
                    tags.ROLLBACK_AT: when,
                    tags.ROLLBACK_REPLACED: check.version,
                },
            )
    registry.set_tags(
        check.version,
        {tags.DRIFT_REASON: reason, tags.DRIFT_DETECTED_AT: when, tags.DRIFT_ACTION: action},
    )
    return action


def _recheck(client: MlflowClient, check: OnlineCheck, recheck: SimulatorRecheck) -> list[float]:
    """The champion's returns on the re-check's fresh simulator episodes, logged on the
    check's run (a retry replays the same seeds and overwrites them alike)."""
    seeds = fresh_seeds(recheck.moment, recheck.episodes)
    returns = simulate(check.model_name, check.version, seeds)
    now = millis(datetime.now(UTC))
    client.log_batch(
        check.mlflow_run_id,
        metrics=[
            Metric("recheck_mean_return", float(np.mean(returns)), now, 0),
            Metric("recheck_episodes", float(len(returns)), now, 0),
        ],
    )
    client.log_dict(
        check.mlflow_run_id,
        {"evidence": SIMULATOR, "seeds": seeds, "returns": list(returns)},
        RECHECK_ARTIFACT,
    )
    return returns


def _log_verdict(client: MlflowClient, run_id: str, prefix: str, verdict: DriftVerdict) -> None:
    now = millis(datetime.now(UTC))
    client.log_batch(
        run_id,
        metrics=[
            Metric(f"{prefix}_difference", verdict.difference.mean, now, 0),
            Metric(f"{prefix}_difference_low", verdict.difference.low, now, 0),
            Metric(f"{prefix}_difference_high", verdict.difference.high, now, 0),
            Metric(f"{prefix}_allowed_difference", verdict.allowed, now, 0),
        ],
    )


def _returns(run_id: str) -> list[float]:
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{RETURNS_ARTIFACT}")["returns"]


def monitoring_run(
    client: MlflowClient, model_name: str, version: str, purpose: str, airflow: AirflowRun
) -> str:
    """This Airflow run's monitoring run for `purpose` ("drift", "reference", "canary")
    about the model's version, created on the first attempt only: a retry logs to the same
    run (one Airflow run checks several models, whose version numbers may be the same)."""
    experiment_id = _experiment_id(client)
    for value in (airflow.key, model_name, version, purpose):
        if "'" in value:
            raise ValueError(f"{value!r} may not contain a single quote")
    found = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{tags.RUN_KEY}` = '{airflow.key}' and "
            f"tags.`{tags.MODEL_NAME}` = '{model_name}' and "
            f"tags.`{tags.MODEL_VERSION}` = '{version}' and "
            f"tags.`{tags.MONITOR_PURPOSE}` = '{purpose}'"
        ),
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run_tags = {
        **airflow.tags(),
        tags.MODEL_NAME: model_name,
        tags.MODEL_VERSION: version,
        tags.MONITOR_PURPOSE: purpose,
    }
    return client.create_run(
        experiment_id, run_name=f"{model_name} v{version} {purpose}", tags=run_tags
    ).info.run_id


def _experiment_id(client: MlflowClient) -> str:
    name = os.environ.get(MONITORING_EXPERIMENT_ENV, DEFAULT_MONITORING_EXPERIMENT)
    return get_or_create_experiment(client, name, artifact_location())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
