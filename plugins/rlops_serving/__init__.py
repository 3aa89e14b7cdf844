"""rlops_serving: the HTTP policy server for the `champion` model version.

Loads the TorchScript actor the MLflow registry alias points to, answers `POST /v1/act`,
exposes Prometheus metrics, and follows the alias when it moves (hot reload, no dropped
requests). Imports rl_core and the registry wrapper of rlops_airflow, never Airflow itself.
"""
