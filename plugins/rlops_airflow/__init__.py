"""Airflow-facing glue of rlops: task callables, quality gate, promotion and MLflow registry.

Imports rl_core; rl_core never imports this package. Modules that pull in torch or mlflow are
imported inside tasks only, so parsing the DAG stays cheap.
"""

MLFLOW_RUN_URL_XCOM_KEY = "mlflow_run_url"
"""XCom key under which each task publishes the link to its MLflow run."""


def stored_xcom(key: str, dag_id: str, run_id: str, task_id: str, map_index: int) -> object:
    """An XCom value read straight from Airflow's metadata DB (None if there is none): for code
    that runs where the Task SDK has no supervisor to ask, like the api-server's extra links
    and the callbacks of `airflow dags test`. Imports Airflow's ORM only when called."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    query = XComModel.get_many(
        key=key, run_id=run_id, dag_ids=dag_id, task_ids=task_id, map_indexes=map_index
    ).with_only_columns(XComModel.value)
    with create_session() as session:
        row = session.execute(query).first()
    return None if row is None else XComModel.deserialize_value(row)
