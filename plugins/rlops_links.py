"""Airflow plugin: an "MLflow run" button on each task instance of the rlops pipeline.

Each task pushes the URL of its MLflow run to XCom; this global operator extra link reads it
back. It runs inside the api-server (not on a worker), so it reads the XCom table directly,
as Airflow's own XCom-backed links do. Tasks without that XCom get no button.
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from rlops_airflow import MLFLOW_RUN_URL_XCOM_KEY


class MlflowRunLink(BaseOperatorLink):
    """Link from a task instance to the MLflow run it logged to."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        query = XComModel.get_many(
            key=MLFLOW_RUN_URL_XCOM_KEY,
            run_id=ti_key.run_id,
            dag_ids=ti_key.dag_id,
            task_ids=ti_key.task_id,
            map_indexes=ti_key.map_index,
        ).with_only_columns(XComModel.value)
        with create_session() as session:
            row = session.execute(query).first()
        return "" if row is None else XComModel.deserialize_value(row)


class RlopsPlugin(AirflowPlugin):
    name = "rlops"
    global_operator_extra_links: ClassVar[list[BaseOperatorLink]] = [MlflowRunLink()]
