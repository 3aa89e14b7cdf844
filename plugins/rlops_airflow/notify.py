"""Failure and deadline alerts for every rlops DAG, through Airflow's notifier mechanism.

One message per failed run: the notifiers are the DAG-level `on_failure_callback`, which
Airflow calls once when the run fails (the task-level callback fires once per failed task,
i.e. once per failed seed or model of a mapped task). The DAG-level context names the last
failed task instance but not its exception, so each task's own `on_failure_callback`
(`record_failure`, after its last try) leaves the one-line reason and its map label in an
XCom for the run's alert.

Two channels, each an Airflow Connection; one not defined: that channel only logs.
- `rlops_alert_webhook` (http or https): POSTs JSON `{"text": ..., "dag_id": ..., ...}` to
  `<conn type>://<host>[:<port>]/<schema>`, the connection's password (if any) as a bearer
  token. `text` is what Slack, Mattermost and Teams incoming webhooks display. As a URI:
  `AIRFLOW_CONN_RLOPS_ALERT_WEBHOOK=https://:TOKEN@hooks.example.org/services/rlops`.
- `rlops_alert_smtp`: an SMTP connection as the SMTP provider reads it (host, port, login,
  password; extra `from_email`, `disable_ssl`, `disable_tls`, `timeout`, `retry_limit`), plus
  the recipients in its extra `to` (comma-separated): the whole mail route is one secret.

A channel that cannot deliver logs why and lets the other one (and the failure) go on.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from rlops_airflow import stored_xcom

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "rlops_alert_webhook"
SMTP_CONN_ID = "rlops_alert_smtp"
WEBHOOK_TYPES = ("http", "https")
FAILURE_XCOM_KEY = "rlops_failure"
"""Where `record_failure` leaves a failed task's reason and map label for the run's alert."""
DELIVERY_TIMEOUT_SECONDS = 10.0
"""A webhook that does not answer in this time is given up: alerts must not hang callbacks."""
NO_REASON = "no reason recorded: see the log"


@dataclass(frozen=True)
class Alert:
    """What a person needs to act on a run: which one, what failed, why, where to look."""

    dag_id: str
    run_id: str
    task: str | None
    try_number: int | None
    reason: str
    log_url: str
    headline: str = "failed"

    @property
    def subject(self) -> str:
        return f"[rlops] {self.dag_id} {self.headline}: run {self.run_id}"

    @property
    def text(self) -> str:
        lines = [f"rlops alert: {self.dag_id} {self.headline} in run {self.run_id}"]
        if self.task is not None:
            lines.append(f"task: {self.task} (try {self.try_number})")
        lines += [f"reason: {self.reason}", f"log: {self.log_url}"]
        return "\n".join(lines)

    @property
    def html(self) -> str:
        """The mail body; every field escaped (a reason is any exception's text)."""
        rows = [("DAG", self.dag_id), ("Run", self.run_id)]
        if self.task is not None:
            rows += [("Task", self.task), ("Try", str(self.try_number))]
        rows.append(("Reason", self.reason))
        cells = "".join(
            f"<tr><th align='left'>{name}</th><td>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        link = html.escape(self.log_url, quote=True)
        return f'<table>{cells}</table><p><a href="{link}">{link}</a></p>'

    def as_json(self) -> dict[str, Any]:
        return {"text": self.text, **asdict(self)}


def first_line(error: object) -> str:
    """The exception's message, first non-empty line (a traceback stays in the log)."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    return lines[0] if lines else (type(error).__name__ if error else NO_REASON)


def ui_url(path: str) -> str:
    """An address in the Airflow UI, from `[api] base_url` (Airflow's default when unset)."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback=None) or "http://localhost:8080"
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


def log_url(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """The task instance's log page in the UI, the address Airflow's own `log_url` builds."""
    mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
    return ui_url(
        f"dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}{mapped}"
        f"?try_number={try_number}"
    )


def record_failure(context: Mapping[str, Any]) -> None:
    """Task-level on_failure_callback (after the last try): the reason and map label for the
    run's alert. Never raises."""
    ti = context["ti"]
    try:
        ti.xcom_push(
            key=FAILURE_XCOM_KEY,
            value={
                "reason": first_line(context.get("exception")),
                "label": getattr(ti, "rendered_map_index", None),
            },
        )
    except Exception:
        log.exception("could not record the failure of %s for its alert", ti.task_id)


def _recorded(ti: Any) -> dict[str, Any]:
    """What `record_failure` left for this task instance, or {}.

    The DAG processor (which runs DAG callbacks under a scheduler) answers XCom reads through
    its supervisor; `airflow dags test` runs them in its own process, which has no supervisor
    but holds the metadata DB, so the row is read there (`stored_xcom`)."""
    try:
        value = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index, key=FAILURE_XCOM_KEY)
    except Exception:
        try:
            key = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
            value = stored_xcom(FAILURE_XCOM_KEY, *key)
        except Exception:
            log.warning("no recorded reason for %s", ti.task_id, exc_info=True)
            return {}
    return value if isinstance(value, dict) else {}


def failure_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for a failed run, from a DAG-level on_failure_callback context."""
    dag_id = context["dag"].dag_id
    run_id = context["run_id"]
    ti = context.get("ti")
    if ti is None:  # Airflow could not name the failed task (e.g. it left the DAG)
        reason = str(context.get("reason") or NO_REASON)
        return Alert(dag_id, run_id, None, None, reason, ui_url(f"dags/{dag_id}/runs/{run_id}"))
    record = _recorded(ti)
    label = record.get("label") or (ti.map_index if ti.map_index >= 0 else None)
    task = ti.task_id if label is None else f"{ti.task_id}[{label}]"
    return Alert(
        dag_id,
        run_id,
        task,
        ti.try_number,
        record.get("reason") or NO_REASON,
        log_url(dag_id, run_id, ti.task_id, ti.map_index, ti.try_number),
    )


def deadline_alert(context: Mapping[str, Any]) -> Alert:
    """The alert for a run still going at its deadline, from a deadline callback's context
    (the run as the REST API shows it, and the deadline)."""
    run = context["dag_run"]
    deadline = context.get("deadline", {}).get("deadline_time")
    reason = (
        f"still {run.get('state', 'running')} at its deadline {deadline} "
        f"(queued at {run.get('queued_at')})"
    )
    dag_id, run_id = run["dag_id"], run["dag_run_id"]
    link = ui_url(f"dags/{dag_id}/runs/{quote(run_id, safe='')}")
    return Alert(dag_id, run_id, None, None, reason, link, headline="missed its deadline")


def _connection(conn_id: str) -> Any | None:
    """The Airflow Connection, or None when it is not defined (that channel logs only)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


class AlertNotifier(BaseNotifier):
    """A channel: `notify` (Airflow's callback entry) sends the run's failure alert; `send`
    sends any alert. Neither raises: a channel that cannot deliver logs why."""

    conn_id: str

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render: the message is built from the context, never templated (a
        reason with Jinja braces stays text), and under `airflow dags test` the context's DAG
        is a SerializedDAG, which has no template environment."""

    def notify(self, context: Any) -> None:
        try:
            alert = failure_alert(context)
        except Exception:
            log.exception("could not build the failure alert for %s", self.conn_id)
            return
        self.send(alert)

    def send(self, alert: Alert) -> None:
        try:
            conn = _connection(self.conn_id)
            if conn is None:
                log.warning("%s (no connection %r: log only)", alert.text, self.conn_id)
                return
            self.deliver(conn, alert)
        except Exception:
            log.exception("could not deliver the alert through %r: %s", self.conn_id, alert.text)

    def deliver(self, conn: Any, alert: Alert) -> None:
        raise NotImplementedError


class WebhookNotifier(AlertNotifier):
    """POSTs the alert as JSON to the http(s) connection `rlops_alert_webhook`."""

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def deliver(self, conn: Any, alert: Alert) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {conn.password}"} if conn.password else {}
        response = httpx.post(
            webhook_url(conn),
            json=alert.as_json(),
            headers=headers,
            timeout=DELIVERY_TIMEOUT_SECONDS,
        )
        response.raise_for_status()


def webhook_url(conn: Any) -> str:
    """`<conn type>://<host>[:<port>]/<schema>`; ValueError naming the bad field."""
    if conn.conn_type not in WEBHOOK_TYPES:
        raise ValueError(
            f"connection {conn.conn_id!r}: conn_type {conn.conn_type!r} is not one of "
            f"{', '.join(WEBHOOK_TYPES)}"
        )
    if not conn.host:
        raise ValueError(f"connection {conn.conn_id!r}: host is empty")
    port = f":{conn.port}" if conn.port else ""
    return f"{conn.conn_type}://{conn.host}{port}/{(conn.schema or '').lstrip('/')}"


class EmailNotifier(AlertNotifier):
    """Mails the alert through the SMTP provider's SmtpNotifier and the connection
    `rlops_alert_smtp`, to the recipients in its extra `to`."""

    def __init__(self, conn_id: str = SMTP_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def deliver(self, conn: Any, alert: Alert) -> None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        to = [a.strip() for a in str(conn.extra_dejson.get("to", "")).split(",") if a.strip()]
        if not to:
            raise ValueError(
                f"connection {self.conn_id!r}: extra 'to' names no recipient "
                "(comma-separated addresses)"
            )
        # Subject and body are given, so SmtpNotifier renders no template: a reason with
        # Jinja braces in it stays text.
        mail = SmtpNotifier(
            to=to, subject=alert.subject, html_content=alert.html, smtp_conn_id=self.conn_id
        )
        mail.notify({})


def failure_notifiers() -> list[AlertNotifier]:
    """A DAG's `on_failure_callback`: one message per failed run on each channel."""
    return [WebhookNotifier(), EmailNotifier()]


DEADLINE_ALERTS_ENV = "RLOPS_DEADLINE_ALERTS"
"""`off` drops the DAGs' deadline alerts where the DAG file is parsed. `airflow dags test` (the
local default and the tests that run a DAG without a scheduler) exits non-zero after a
successful run of any DAG with a deadline: it hands the in-memory alerts to a query that
expects their database ids (apache/airflow#73428, open in 3.3.2; fix in PR #73430). A scheduler
(compose, devstack) keeps them."""


def deadline_alerts_enabled() -> bool:
    return os.environ.get(DEADLINE_ALERTS_ENV, "on").strip().lower() != "off"


def deadline_missed(context: Mapping[str, Any], **_: Any) -> None:
    """A `SyncCallback` for a `DeadlineAlert`: the run missed its deadline; both channels."""
    alert = deadline_alert(context)
    for notifier in failure_notifiers():
        notifier.send(alert)
