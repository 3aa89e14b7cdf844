"""The pipeline's task bodies, one module per stage, in pipeline order: `train`, `evaluate`
(the quality gate and the sweep's choice), `export` (the policy model and its latency),
`register`, `promote`.

Each body takes the run's settings and small values from upstream (an MLflow run id, a few
numbers) and returns small values for XCom; checkpoints and exported files go through the
MLflow artifact store. Every one is safe to retry: it finds its MLflow run by the Airflow run
key, resumes training from the last checkpoint, and reuses an existing model version. The
Airflow tasks that call them are `rlops_airflow.dag_tasks`; `candidate` holds what several
stages read of a candidate.
"""
