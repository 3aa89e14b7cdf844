"""Airflow-facing glue of rlops: task callables, quality gate, promotion and MLflow registry.

Imports rl_core; rl_core never imports this package. Modules that pull in torch or mlflow are
imported inside tasks only, so parsing the DAG stays cheap.
"""

MLFLOW_RUN_URL_XCOM_KEY = "mlflow_run_url"
"""XCom key under which each task publishes the link to its MLflow run."""
