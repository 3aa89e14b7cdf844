"""Airflow plugin: an "MLflow run" button on each task instance of the rlops pipeline.

Each task pushes the URL of its MLflow run to XCom; this global operator extra link reads it
back. It runs inside the api-server (not on a worker), so it reads the XCom table directly,
as Airflow's own XCom-backed links do. Tasks without that XCom get no button.
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from rlops_airflow import MLFLOW_RUN_URL_XCOM_KEY, stored_xcom


class MlflowRunLink(BaseOperatorLink):
    """Link from a task instance to the MLflow run it logged to."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        key = (ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
        return stored_xcom(MLFLOW_RUN_URL_XCOM_KEY, *key) or ""


class RlopsPlugin(AirflowPlugin):
    name = "rlops"
    global_operator_extra_links: ClassVar[list[BaseOperatorLink]] = [MlflowRunLink()]
