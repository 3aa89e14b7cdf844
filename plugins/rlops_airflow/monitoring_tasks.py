"""The champion monitor's Airflow tasks: thin wrappers around `rlops_airflow.monitoring`.

Imported when the DAG file is parsed, so only Airflow and the settings model are imported here;
torch, gymnasium and mlflow load inside the task bodies, on the worker. Every task reads its
params through `MonitorSettings`. A detected drift raises
`AirflowFailException`: the task fails at once, without retries (a retry would judge the
rolled-back champion and turn the run green), and the run's alert goes out
(`rlops_airflow.notify`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from rlops_airflow.assets import CHAMPION_DEGRADED
from rlops_airflow.dag_tasks import airflow_run
from rlops_airflow.monitor_settings import MonitorSettings
from rlops_airflow.settings import ConfError, parse_conf

log = logging.getLogger(__name__)

DEGRADATION_XCOM_KEY = "degradation"
GUARD_TASK_ID = "monitor_model.drift_guard"
MODEL_LABEL = "{{ rlops_model_name }}"
"""What a per-model task instance is called in the UI and in alerts instead of its map index."""


@task(retries=2, retry_delay=timedelta(seconds=30))
def models_to_monitor(params: dict | None = None) -> list[str]:
    """The registered models this run checks: the one `registered_model_name` names, else
    every model whose champion is an rlops policy. A conf the settings refuse (a key the DAG
    does not declare, a bad value) fails at once, without retries, before any model is
    checked."""
    settings = _settings(params)
    if settings.registered_model_name:
        return [settings.registered_model_name]
    _prepare()
    from rlops_registry.registry import models_with_champion

    names = models_with_champion()
    if not names:
        raise AirflowSkipException("no registered model has an rlops champion: nothing to monitor")
    log.info("monitoring the champions of %d models: %s", len(names), ", ".join(names))
    return names


@task(retries=2, retry_delay=timedelta(seconds=30), map_index_template=MODEL_LABEL)
def evaluate_champion(
    model_name: str, params: dict | None = None, dag_run: Any = None
) -> dict[str, Any]:
    """The champion's online returns (served traffic, else fresh simulator episodes), logged
    to MLflow."""
    settings = _settings(params)
    _label(model_name)
    _prepare()
    from rlops_airflow import monitoring

    evidence = monitoring.Evidence(
        episodes=settings.episodes,
        reference_episodes=settings.reference_episodes,
        min_served_episodes=settings.min_served_episodes,
        window=settings.window,
    )
    check = monitoring.check_champion(model_name, evidence, _moment(dag_run), airflow_run(dag_run))
    if check is None:
        raise AirflowSkipException(f"{model_name} has no champion: nothing to monitor")
    log.info(
        "%s v%s: online mean return %.2f over %d %s episodes",
        model_name,
        check.version,
        check.online,
        check.episodes,
        check.evidence,
    )
    return asdict(check)


@task(retries=2, retry_delay=timedelta(seconds=30), map_index_template=MODEL_LABEL)
def drift_guard(
    check: dict[str, Any], params: dict | None = None, dag_run: Any = None, ti: Any = None
) -> dict[str, Any]:
    """Compare the check with the champion's simulator reference, re-checking a served breach
    in the simulator unless `confirm_with_simulator` is off; after `breaches_to_rollback`
    consecutive (confirmed) breaches roll `champion` back and fail loudly."""
    settings = _settings(params)
    _label(check["model_name"])
    _prepare()
    from rlops_airflow import monitoring
    from rlops_airflow.drift import DriftRule

    rule = DriftRule(
        tolerance=settings.drift_tolerance,
        confidence=settings.confidence,
        breaches_to_rollback=settings.breaches_to_rollback,
    )
    recheck = (
        monitoring.SimulatorRecheck(settings.episodes, _moment(dag_run))
        if settings.confirm_with_simulator
        else None
    )
    outcome = monitoring.guard(monitoring.OnlineCheck(**check), rule, recheck)
    if outcome.drifted:
        degradation = _degradation(check, outcome.reason)
        if degradation is not None:  # for `announce_degraded`: this task's own events die with it
            ti.xcom_push(key=DEGRADATION_XCOM_KEY, value=degradation.as_extra())
        raise AirflowFailException(
            f"drift of {check['model_name']} v{check['version']}: {outcome.message}"
        )
    if outcome.unconfirmed:
        log.warning(
            "%s v%s: served traffic breaches, the simulator does not confirm it: nothing "
            "moves (forged reports, or a world the simulator does not model?): %s",
            check["model_name"],
            check["version"],
            outcome.message,
        )
    else:
        log.log(logging.WARNING if outcome.breaches else logging.INFO, "%s", outcome.message)
    return {
        "breaches": outcome.breaches,
        "unconfirmed": outcome.unconfirmed,
        "action": outcome.action,
    }


def _degradation(check: dict[str, Any], reason: str) -> Any:
    """What the `champion-degraded` event says after a drift: the version rolled back and the
    one restored (None: no previous champion, the drifting one stays champion); None when the
    champion had already moved elsewhere (a newer promotion), so nothing needs retraining."""
    from rlops_airflow.retrain import Degradation
    from rlops_registry import tags
    from rlops_registry.registry import CHAMPION, ModelRegistry

    current = ModelRegistry(check["model_name"]).alias(CHAMPION)
    drifted = check["version"]
    if current is None:
        return None
    if str(current.version) == drifted:
        return Degradation(check["model_name"], drifted, None, reason)
    if current.tags.get(tags.ROLLBACK_REPLACED) != drifted:
        return None
    return Degradation(check["model_name"], drifted, str(current.version), reason)


@task(outlets=[CHAMPION_DEGRADED], map_index_template=MODEL_LABEL)
def announce_degraded(model_name: str, ti: Any = None, outlet_events: Any = None) -> None:
    """The `champion-degraded` asset event of `drift_guard`'s rollback (extra: the model, the
    rolled-back and restored versions, the reason); skipped, so no event, without one.

    A failed task emits no asset event, and the guard must fail (the run's alert): this task
    runs after it whatever its state. It is the guard's teardown, so the run's state is still
    decided by the guard, failed on a drift."""
    _label(model_name)
    degradation = ti.xcom_pull(
        task_ids=GUARD_TASK_ID, key=DEGRADATION_XCOM_KEY, map_indexes=ti.map_index
    )
    if not degradation:
        raise AirflowSkipException(f"{model_name}: no rollback, no degraded champion")
    log.warning("champion of %s degraded: %s", model_name, degradation)
    outlet_events[CHAMPION_DEGRADED].extra = degradation


@task(retries=2, retry_delay=timedelta(seconds=30), map_index_template=MODEL_LABEL)
def judge_canary(
    model_name: str, params: dict | None = None, dag_run: Any = None
) -> dict[str, Any]:
    """Challenger against champion on their served returns; promotes on a passing verdict
    only when `promote_on_canary` is set and (unless `confirm_with_simulator` is off) the
    simulator comparison of the two passes too."""
    settings = _settings(params)
    _label(model_name)
    _prepare()
    from rlops_airflow import canary

    rule = canary.CanaryRule(
        confidence=settings.confidence,
        noninferiority_margin=settings.noninferiority_margin,
        min_episodes=settings.min_served_episodes,
        window=settings.window,
        promote=settings.promote_on_canary,
        confirm_with_simulator=settings.confirm_with_simulator,
        episodes=settings.episodes,
    )
    verdict = canary.judge_canary(model_name, rule, _moment(dag_run), airflow_run(dag_run))
    if verdict is None:
        raise AirflowSkipException(f"{model_name} has no challenger apart from its champion")
    log.info("canary of %s: %s; %s", model_name, verdict.reason, verdict.action)
    return {"passes": verdict.passes, "action": verdict.action}


def _settings(params: Mapping[str, Any] | None) -> MonitorSettings:
    """The run's params (the DAG's defaults and its conf, as Airflow merged them) read through
    `MonitorSettings`, in the pipeline's wording; a refusal fails the task without retries,
    since a bad conf stays bad."""
    try:
        return parse_conf(params or {}, MonitorSettings)
    except ConfError as exc:
        raise AirflowFailException(str(exc)) from None


def _label(model_name: str) -> None:
    """Name this mapped task instance after its model (rendered through MODEL_LABEL)."""
    get_current_context()["rlops_model_name"] = model_name


def _prepare() -> None:
    """Configure MLflow for this worker before anything imports it."""
    from rlops_airflow.task_runtime import prepare_mlflow

    prepare_mlflow()


def _moment(dag_run: Any) -> datetime:
    """When the check is due: a REST trigger may have no logical date."""
    return dag_run.logical_date or dag_run.run_after
