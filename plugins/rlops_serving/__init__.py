"""rlops_serving: the HTTP policy server for the `champion` model version (and a canary).

Loads the TorchScript actor the MLflow registry alias points to, answers `POST /v1/act`,
exposes Prometheus metrics, and follows the alias when it moves (hot reload, no dropped
requests). With a canary it also serves the `challenger` to a share of new episodes; clients
report finished episodes (`POST /v1/episodes`) and the server writes them to MLflow. Imports
rl_core and rlops_registry, never Airflow itself.
"""
