"""Airflow itself runs the DAGs (`airflow dags test`) with the alert connections pointing at
real receivers on 127.0.0.1: a failed run sends exactly one message on each channel, whatever
its number of failed tasks and retries; a successful run sends none."""

from __future__ import annotations

import json
import os
import sqlite3
from html import escape as html_escape
from pathlib import Path

from tests.conftest import airflow_dags_test, artifact_file
from tests.notify.receivers import RECIPIENTS, SENDER, alert_env

PROBE_DAGS = Path(__file__).parent / "dags"
BASE_URL = "http://airflow.example:8080"


def _runs(airflow_env: dict[str, str], dag_id: str) -> list[tuple[str, str]]:
    """Run id and state of every run of the DAG, oldest first, from Airflow's own DB."""
    db = airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,)
        ).fetchall()


def _tries(airflow_env: dict[str, str], dag_id: str, run_id: str) -> list[tuple]:
    db = airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT task_id, map_index, state, try_number FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index",
            (dag_id, run_id),
        ).fetchall()


def _one_of_each(webhook, smtp) -> tuple[dict, object]:
    """The one webhook body and the one mail each receiver got."""
    assert len(webhook.received) == 1, webhook.received
    assert len(smtp.handler.received) == 1, smtp.handler.received
    (post,) = webhook.received
    assert post["path"] == "/hooks/rlops"
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    ((sender, recipients, mail),) = smtp.handler.received
    assert (sender, recipients) == (SENDER, list(RECIPIENTS))
    return post["body"], mail


def _mail_html(mail) -> str:
    (part,) = [p for p in mail.walk() if p.get_content_type() == "text/html"]
    return part.get_payload(decode=True).decode()


def test_a_failed_pipeline_run_sends_one_alert_per_channel(airflow_db, webhook, smtp) -> None:
    env = {**os.environ, **airflow_db, **alert_env(webhook, smtp)}
    env["AIRFLOW__API__BASE_URL"] = BASE_URL
    done = airflow_dags_test("rlops_sac_pipeline", env, {"totl_timesteps": 5000})
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    run_id, state = _runs(airflow_db, "rlops_sac_pipeline")[-1]
    assert state == "failed"
    body, mail = _one_of_each(webhook, smtp)
    # What a person receives, kept for them to read (and for the docs).
    artifact_file("alert-webhook.json").write_text(json.dumps(body, indent=2))
    artifact_file("alert-mail.eml").write_bytes(mail.as_bytes())
    reason = "invalid conf: totl_timesteps: unknown parameter; did you mean total_timesteps?"
    assert body["dag_id"] == "rlops_sac_pipeline"
    assert body["run_id"] == run_id
    assert (body["task"], body["try_number"]) == ("validate_conf", 1)
    assert body["reason"] == reason
    link = body["log_url"]
    assert link.startswith(f"{BASE_URL}/dags/rlops_sac_pipeline/runs/manual__")
    assert link.endswith("/tasks/validate_conf?try_number=1")
    assert body["text"].startswith(f"rlops alert: rlops_sac_pipeline failed in run {run_id}\n")
    assert mail["Subject"] == f"[rlops] rlops_sac_pipeline failed: run {run_id}"
    html = _mail_html(mail)
    for field in ("validate_conf", run_id, reason, link):
        assert html_escape(field) in html, field


def test_two_failed_mapped_tasks_with_retries_send_one_alert(airflow_db, webhook, smtp) -> None:
    """Two mapped instances fail, each on its second try: the DAG-level notifiers send one
    message for the run, naming the last failed instance by its label."""
    env = {**os.environ, **airflow_db, **alert_env(webhook, smtp)}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROBE_DAGS)
    done = airflow_dags_test("rlops_alert_probe", env, {})
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    run_id, _ = _runs(airflow_db, "rlops_alert_probe")[-1]
    assert _tries(airflow_db, "rlops_alert_probe", run_id) == [
        ("probe", 0, "failed", 2),
        ("probe", 1, "failed", 2),
    ]
    body, mail = _one_of_each(webhook, smtp)
    assert body["task"] in ("probe[model-a]", "probe[model-b]")
    item = body["task"][-2]
    assert (body["try_number"], body["reason"]) == (2, f"probe {item} broke")
    index = "ab".index(item)
    assert body["log_url"].endswith(f"/tasks/probe/mapped/{index}?try_number=2")
    assert body["task"] in _mail_html(mail)


def test_a_successful_run_sends_nothing(airflow_db, webhook, smtp) -> None:
    env = {**os.environ, **airflow_db, **alert_env(webhook, smtp)}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROBE_DAGS)
    done = airflow_dags_test("rlops_alert_probe", env, {"fail": False})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert _runs(airflow_db, "rlops_alert_probe")[-1][1] == "success"
    assert webhook.received == []
    assert smtp.handler.received == []
