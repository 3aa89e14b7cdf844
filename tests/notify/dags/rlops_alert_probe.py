"""A DAG for the alert tests: two mapped instances that fail, each after a retry, wired to
the alerts like the rlops DAGs; conf `{"fail": false}` makes it succeed."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, get_current_context, task

from rlops_airflow.notify import failure_notifiers, record_failure


@task(map_index_template="{{ probe_label }}")
def probe(item: str, params: dict | None = None) -> None:
    get_current_context()["probe_label"] = f"model-{item}"
    if params["fail"]:
        raise RuntimeError(f"probe {item} broke\nsecond line of the message")


@dag(
    dag_id="rlops_alert_probe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(0),
        "on_failure_callback": record_failure,
    },
    on_failure_callback=failure_notifiers(),
    params={"fail": True},
)
def rlops_alert_probe() -> None:
    probe.expand(item=["a", "b"])


rlops_alert_probe()
