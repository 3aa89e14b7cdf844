"""The champion monitor's Airflow tasks and its failure alert: thin wrappers around
`rlops_airflow.monitoring`.

Imported when the DAG file is parsed, so only Airflow is imported here; torch, gymnasium and
mlflow load inside the task bodies, on the worker. A detected drift raises
`AirflowFailException`: the task fails at once, without retries (a retry would judge the
rolled-back champion and turn the run green), and the failure callback sends the alert.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

log = logging.getLogger(__name__)

ALERT_WEBHOOK_VARIABLE = "rlops_alert_webhook_url"
"""Airflow Variable (or env AIRFLOW_VAR_RLOPS_ALERT_WEBHOOK_URL): where alerts are POSTed as
`{"text": ...}`, which Slack, Mattermost and Teams incoming webhooks accept. Unset: log only."""
ALERT_TIMEOUT_SECONDS = 10.0


def unknown_conf_keys(conf: Mapping[str, Any], declared: Iterable[str]) -> str | None:
    """Why a run's conf cannot be used, naming each key no Param declares (with the closest
    declared one), or None. Airflow accepts such a key at trigger time and ignores it, so a
    typo like `episdoes` would silently run the check with the default."""
    known = sorted(declared)
    unknown = sorted(set(conf) - set(known))
    if not unknown:
        return None
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        problems.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"conf: unknown key {', '.join(problems)}; the monitor takes {', '.join(known)}"


@task(retries=2, retry_delay=timedelta(seconds=30))
def evaluate_champion(
    params: dict | None = None, dag_run: Any = None, dag: Any = None
) -> dict[str, Any]:
    """Online mean return of the champion on fresh env seeds, logged to MLflow; a conf with
    a key the DAG does not declare fails at once, without retries."""
    refusal = unknown_conf_keys(dag_run.conf or {}, dag.params.keys())
    if refusal:
        raise AirflowFailException(refusal)
    from rlops_airflow.task_runtime import prepare_mlflow

    prepare_mlflow()
    from rlops_airflow import monitoring
    from rlops_airflow.mlflow_run import AirflowRun

    name = params["registered_model_name"]
    moment = dag_run.logical_date or dag_run.run_after  # a REST trigger may have no logical date
    check = monitoring.check_champion(
        name, params["episodes"], moment, AirflowRun(dag_run.dag_id, dag_run.run_id)
    )
    if check is None:
        raise AirflowSkipException(f"{name} has no champion: nothing to monitor")
    log.info("%s v%s: online mean return %.2f", name, check.version, check.online)
    return asdict(check)


@task(retries=2, retry_delay=timedelta(seconds=30))
def drift_guard(check: dict[str, Any], params: dict | None = None) -> dict[str, Any]:
    """Roll `champion` back and fail loudly if its online return drifted below the recorded one."""
    from rlops_airflow.task_runtime import prepare_mlflow

    prepare_mlflow()
    from rlops_airflow import monitoring

    outcome = monitoring.guard(monitoring.OnlineCheck(**check), params["drift_tolerance"])
    if outcome.verdict.drifted:
        raise AirflowFailException(f"drift: {outcome.message}")
    log.info("no drift: %s", outcome.verdict.reason)
    return {"drifted": False, "threshold": outcome.verdict.threshold}


def alert_on_failure(context: Any) -> None:
    """on_failure_callback: log the failure at ERROR and POST it to the alert webhook, if set.

    Never raises: a broken webhook is logged, and must not hide the failure it reports.
    """
    ti = context["ti"]
    text = (
        f"rlops alert: {ti.dag_id}.{ti.task_id} failed in run {ti.run_id}: "
        f"{context.get('exception')}"
    )
    log.error("%s", text)
    url = Variable.get(ALERT_WEBHOOK_VARIABLE, default=None)
    if not url:
        return
    import httpx

    try:
        httpx.post(url, json={"text": text}, timeout=ALERT_TIMEOUT_SECONDS).raise_for_status()
    except httpx.HTTPError:
        log.exception("could not deliver the alert to the webhook")
