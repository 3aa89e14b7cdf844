"""What the pipeline, the policy server and the drift monitor agree on about the MLflow
registry: aliases, tag names, and registry operations.

Neutral ground: it imports MLflow and nothing of Airflow, the server or the pipeline, so
`rlops_serving` and `rlops_airflow` both build on it without importing each other.
"""
