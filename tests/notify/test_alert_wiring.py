"""How the alerts are wired and worded: one DAG-level alert per failed run on every DAG, the
message's fields, the channels' failure modes (each on a real receiver), the nightly
deadline and `train`'s per-run timeout."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from airflow.sdk import Connection

from rlops_airflow import dag_tasks, notify
from rlops_airflow.notify import Alert, EmailNotifier, WebhookNotifier, record_failure
from tests.conftest import REPO
from tests.notify.receivers import RECIPIENTS, smtp_uri, webhook_uri

ALERT = Alert(
    "rlops_champion_monitor",
    "scheduled__2026-12-07T10:30:00+00:00",
    "monitor_model.drift_guard[rlops-sac-pendulum]",
    1,
    "drift of rlops-sac-pendulum v3: <b>{{ 2 consecutive }}</b>",
    "http://airflow.example:8080/dags/x/runs/r/tasks/t/mapped/0?try_number=1",
)


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags" / f"{dag_id}.py")).dags[dag_id]


@pytest.mark.parametrize(
    "dag_id", ["rlops_sac_pipeline", "rlops_sac_tune", "rlops_champion_monitor"]
)
def test_every_dag_alerts_at_dag_level_and_only_records_at_task_level(dag_id) -> None:
    """Airflow calls a DAG's callback once per failed run, a task's once per failed task
    instance: the notifiers sit at DAG level, the tasks only record their reason."""
    dag = _dag(dag_id)
    assert [type(n) for n in dag.on_failure_callback] == [WebhookNotifier, EmailNotifier]
    for task in dag.tasks:
        callbacks = task.on_failure_callback
        assert (callbacks if isinstance(callbacks, list) else [callbacks]) == [record_failure]


def test_the_nightly_run_has_a_deadline_that_alerts(monkeypatch) -> None:
    from airflow.sdk.definitions.callback import SyncCallback
    from airflow.sdk.definitions.deadline import DeadlineReference

    monkeypatch.setenv(notify.DEADLINE_ALERTS_ENV, "on")  # as a scheduler parses it
    (deadline,) = _dag("rlops_sac_pipeline").deadline
    assert deadline.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert deadline.interval == timedelta(hours=2)
    assert deadline.callback == SyncCallback("rlops_airflow.notify.deadline_missed")
    monkeypatch.setenv(notify.DEADLINE_ALERTS_ENV, "off")  # where `airflow dags test` runs it
    assert not _dag("rlops_sac_pipeline").deadline


def test_train_times_out_per_run_from_its_total_timesteps() -> None:
    from rlops_airflow.settings import PipelineSettings

    largest = PipelineSettings.model_json_schema()["properties"]["total_timesteps"]["maximum"]
    assert largest == dag_tasks.MAX_TOTAL_TIMESTEPS
    assert dag_tasks.train_timeout(20_000) == timedelta(minutes=5, seconds=667)
    train = _dag("rlops_sac_pipeline").get_task("train")
    assert train.partial_kwargs["execution_timeout"] == dag_tasks.train_timeout(largest)
    task = SimpleNamespace(execution_timeout=train.partial_kwargs["execution_timeout"])
    dag_tasks.time_box_train({"task": task, "params": {"total_timesteps": 3_000}})
    assert task.execution_timeout == timedelta(minutes=5, seconds=100)


def test_the_message_carries_every_field_on_one_line_each() -> None:
    assert ALERT.text.splitlines() == [
        f"rlops alert: rlops_champion_monitor failed in run {ALERT.run_id}",
        "task: monitor_model.drift_guard[rlops-sac-pendulum] (try 1)",
        f"reason: {ALERT.reason}",
        f"log: {ALERT.log_url}",
    ]
    assert ALERT.subject == f"[rlops] rlops_champion_monitor failed: run {ALERT.run_id}"
    assert "<b>" not in ALERT.html  # the reason is any exception's text: escaped
    assert "&lt;b&gt;{{ 2 consecutive }}&lt;/b&gt;" in ALERT.html


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (RuntimeError("boom\n  Traceback...\nmore"), "boom"),
        (RuntimeError("\n\n  first real line  \nnext"), "first real line"),
        (KeyError(), "KeyError"),
        (None, notify.NO_REASON),
    ],
)
def test_the_reason_is_the_first_line_of_the_exception(error, line) -> None:
    assert notify.first_line(error) == line


def test_the_log_link_is_built_from_the_api_base_url(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    assert notify.log_url("d", "manual__2026-12-07T10:00:00+00:00", "t", 2, 3) == (
        "https://airflow.example/dags/d/runs/manual__2026-12-07T10%3A00%3A00%2B00%3A00"
        "/tasks/t/mapped/2?try_number=3"
    )
    assert notify.log_url("d", "r", "t", -1, 1).endswith("/runs/r/tasks/t?try_number=1")


def test_a_missed_deadline_reaches_both_channels(webhook, smtp, monkeypatch) -> None:
    """The callback's context as Airflow builds it (the run as the REST API shows it)."""
    monkeypatch.setenv("AIRFLOW_CONN_RLOPS_ALERT_WEBHOOK", webhook_uri(webhook))
    monkeypatch.setenv("AIRFLOW_CONN_RLOPS_ALERT_SMTP", smtp_uri(smtp))
    run = {
        "dag_id": "rlops_sac_pipeline",
        "dag_run_id": "scheduled__2026-12-07T02:00:00+00:00",
        "state": "running",
        "queued_at": "2026-12-07T02:00:01Z",
    }
    context = {"dag_run": run, "deadline": {"id": "x", "deadline_time": "2026-12-07T04:00:01Z"}}
    notify.deadline_missed(context=context)
    (post,) = webhook.received
    body = post["body"]
    assert body["text"].startswith(
        f"rlops alert: rlops_sac_pipeline missed its deadline in run {run['dag_run_id']}"
    )
    assert body["reason"] == (
        "still running at its deadline 2026-12-07T04:00:01Z (queued at 2026-12-07T02:00:01Z)"
    )
    assert body["log_url"].endswith(
        "/dags/rlops_sac_pipeline/runs/scheduled__2026-12-07T02%3A00%3A00%2B00%3A00"
    )
    ((_, recipients, mail),) = smtp.handler.received
    assert recipients == list(RECIPIENTS)
    assert mail["Subject"].startswith("[rlops] rlops_sac_pipeline missed its deadline")


def test_without_connections_the_alert_is_only_logged(monkeypatch, caplog) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RLOPS_ALERT_WEBHOOK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_RLOPS_ALERT_SMTP", raising=False)
    WebhookNotifier().send(ALERT)
    EmailNotifier().send(ALERT)
    assert caplog.text.count(ALERT.text.splitlines()[0]) == 2
    assert "no connection 'rlops_alert_webhook': log only" in caplog.text
    assert "no connection 'rlops_alert_smtp': log only" in caplog.text


def test_a_channel_that_cannot_deliver_never_hides_the_failure(webhook, monkeypatch, caplog):
    webhook.status = 500
    monkeypatch.setenv("AIRFLOW_CONN_RLOPS_ALERT_WEBHOOK", webhook_uri(webhook))
    WebhookNotifier().send(ALERT)  # does not raise
    assert len(webhook.received) == 1
    assert "could not deliver the alert through 'rlops_alert_webhook'" in caplog.text
    monkeypatch.setenv(  # nothing listens on port 9 (discard)
        "AIRFLOW_CONN_RLOPS_ALERT_SMTP", "smtp://127.0.0.1:9?to=a%40b.org&retry_limit=0"
    )
    EmailNotifier().send(ALERT)  # does not raise
    assert "could not deliver the alert through 'rlops_alert_smtp'" in caplog.text


@pytest.mark.parametrize(
    ("conn", "problem"),
    [
        (
            Connection(conn_id="w", conn_type="smtp", host="h"),
            "conn_type 'smtp' is not one of http, https",
        ),
        (Connection(conn_id="w", conn_type="https", host=""), "host is empty"),
    ],
)
def test_a_bad_webhook_connection_is_named(conn, problem) -> None:
    with pytest.raises(ValueError, match=problem):
        notify.webhook_url(conn)


def test_the_webhook_url_comes_from_the_connection() -> None:
    conn = Connection.from_uri("https://:tok@hooks.example.org:8443/services/rlops", conn_id="w")
    assert notify.webhook_url(conn) == "https://hooks.example.org:8443/services/rlops"


def test_an_smtp_connection_without_recipients_is_named(smtp, monkeypatch, caplog) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_RLOPS_ALERT_SMTP", smtp_uri(smtp).replace("&to=", "&cc="))
    EmailNotifier().send(ALERT)
    assert "extra 'to' names no recipient" in caplog.text
    assert smtp.handler.received == []
