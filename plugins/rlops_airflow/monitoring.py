"""Online monitoring of the champion, and the drift guard that rolls it back.

Each check evaluates the version `champion` points to on fresh env seeds (drawn from the DAG
run's date, so a retry replays the same episodes and no two hours share them), loaded by the
policy server's own loader: the monitor judges exactly what is served. The result goes to
MLflow twice: one run per check in the monitoring experiment (tagged with the model name and
version), and tags on the version itself (`rlops.online_return`, which the policy server
exports to Prometheus).

The drift rule. Returns can be negative (a good Pendulum policy scores about -150), so
"more than 5% below" is measured on the magnitude of the return recorded at registration:

    drift  <=>  online < recorded - tolerance * |recorded|

(recorded -150, tolerance 0.05: drift below -157.5; recorded +90: below +85.5; recorded 0:
any negative return). On drift the guard moves `champion` back to `previous_champion` and tags
both versions with the reason and time; with no previous champion it changes no alias and
only alerts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from rl_core.evaluation import evaluate
from rl_core.export import exported_policy
from rl_core.tracking import get_or_create_experiment
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.settings import artifact_location
from rlops_registry import tags
from rlops_registry.registry import CHAMPION, ModelRegistry, NoPreviousChampion
from rlops_serving.policy import load_policy

MONITORING_EXPERIMENT_ENV = "RLOPS_MONITORING_EXPERIMENT"
DEFAULT_MONITORING_EXPERIMENT = "rlops-monitoring"


class MonitoringError(RuntimeError):
    """The champion cannot be monitored (e.g. no recorded return to compare with)."""


@dataclass(frozen=True)
class OnlineCheck:
    """One evaluation of the champion on fresh seeds (what the guard task gets via XCom)."""

    model_name: str
    version: str
    recorded: float
    online: float
    episodes: int
    mlflow_run_id: str


@dataclass(frozen=True)
class DriftVerdict:
    drifted: bool
    threshold: float
    reason: str


@dataclass(frozen=True)
class GuardOutcome:
    verdict: DriftVerdict
    action: str
    """What the guard did: "none", "rolled back to v1", or why it could not."""

    @property
    def message(self) -> str:
        return f"{self.verdict.reason}; {self.action}"


def drift_threshold(recorded: float, tolerance: float) -> float:
    """The lowest online return that is not drift (see the module docstring)."""
    return recorded - tolerance * abs(recorded)


def judge(check: OnlineCheck, tolerance: float) -> DriftVerdict:
    threshold = drift_threshold(check.recorded, tolerance)
    drifted = check.online < threshold
    comparison = "<" if drifted else ">="
    reason = (
        f"{check.model_name} v{check.version}: online mean return {check.online:.2f} over "
        f"{check.episodes} fresh episodes {comparison} {threshold:.2f} (recorded "
        f"{check.recorded:.2f} minus {tolerance:.0%} of its magnitude)"
    )
    return DriftVerdict(drifted, threshold, reason)


def fresh_seeds(moment: datetime, n: int) -> list[int]:
    """`n` env seeds derived from `moment`: the same for a retry, new for every other check."""
    state = np.random.SeedSequence(int(moment.timestamp())).generate_state(n)
    return [int(seed) for seed in state]


def check_champion(
    model_name: str, episodes: int, moment: datetime, airflow: AirflowRun
) -> OnlineCheck | None:
    """Evaluate the current champion on `episodes` fresh seeds and log it (None: no champion)."""
    registry = ModelRegistry(model_name)
    champion = registry.alias(CHAMPION)
    if champion is None:
        return None
    version = str(champion.version)
    if tags.REWARD not in champion.tags:
        raise MonitoringError(
            f"{model_name} v{version} has no {tags.REWARD!r} tag: no recorded return "
            "to compare the online return with"
        )
    policy = load_policy(model_name, version)
    result = evaluate(exported_policy(policy.module), policy.env, fresh_seeds(moment, episodes))
    client = MlflowClient()
    run = client.create_run(
        _experiment_id(client),
        run_name=f"{model_name} v{version} online",
        tags={**airflow.tags(), tags.MODEL_NAME: model_name, tags.MODEL_VERSION: version},
    )
    run_id = run.info.run_id
    recorded = float(champion.tags[tags.REWARD])
    now = _millis()
    client.log_batch(
        run_id,
        metrics=[
            Metric("online_mean_return", result.mean, now, 0),
            Metric("online_std_return", result.std, now, 0),
            Metric("recorded_reward", recorded, now, 0),
        ],
        params=[Param("episodes", str(episodes)), Param("env", str(policy.env))],
    )
    client.log_dict(run_id, result.as_dict(), "monitoring/returns.json")
    client.set_terminated(run_id)
    registry.set_tags(
        version,
        {
            tags.ONLINE_RETURN: f"{result.mean:.4f}",
            tags.ONLINE_CHECKED_AT: _now(),
            tags.ONLINE_RUN: run_id,
        },
    )
    return OnlineCheck(model_name, version, recorded, result.mean, episodes, run_id)


def guard(check: OnlineCheck, tolerance: float) -> GuardOutcome:
    """Apply the drift rule; on drift roll `champion` back if it still is the checked version."""
    verdict = judge(check, tolerance)
    client = MlflowClient()
    client.log_metric(check.mlflow_run_id, "drift_threshold", verdict.threshold)
    client.set_tag(check.mlflow_run_id, "rlops.drift", "detected" if verdict.drifted else "none")
    if not verdict.drifted:
        return GuardOutcome(verdict, "none")
    registry = ModelRegistry(check.model_name)
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
                    tags.ROLLBACK_REASON: f"champion again because {verdict.reason}",
                    tags.ROLLBACK_AT: when,
                    tags.ROLLBACK_REPLACED: check.version,
                },
            )
    registry.set_tags(
        check.version,
        {
            tags.DRIFT_REASON: verdict.reason,
            tags.DRIFT_DETECTED_AT: when,
            tags.DRIFT_ACTION: action,
        },
    )
    client.set_tag(check.mlflow_run_id, tags.DRIFT_ACTION, action)
    return GuardOutcome(verdict, action)


def _experiment_id(client: MlflowClient) -> str:
    name = os.environ.get(MONITORING_EXPERIMENT_ENV, DEFAULT_MONITORING_EXPERIMENT)
    return get_or_create_experiment(client, name, artifact_location())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _millis() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
