"""What every rlops task does before it touches MLflow, in either DAG.

Imported inside task bodies only (it imports mlflow), never when a DAG file is parsed.
"""

from __future__ import annotations

import logging
import os

MLFLOW_LOGGERS = ("mlflow", "alembic", "huey", "sqlalchemy.engine")
"""The loggers MLflow gives a stderr handler of its own when it is imported."""


def prepare_mlflow() -> None:
    """Route MLflow's log lines through the task's logger, bound its HTTP requests, and wait
    for its tracking server.

    Airflow's supervisor files every stderr line at error level, so MLflow's own handler
    would make a successful run look failed; routed to the task's logger, each line keeps its
    level. For the same reason MLflow's artifact progress bars (drawn whenever tqdm is
    installed, as Optuna installs it) stay off. A paused or unreachable tracking server is
    waited for with a log line per retry, then fails the task with one line naming the
    tracking URI, instead of hanging silently.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  (it sets up its loggers on import)

    from rl_core.common.tracking import bound_mlflow_requests, wait_for_tracking_server

    for name in MLFLOW_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    bound_mlflow_requests()
    wait_for_tracking_server()
