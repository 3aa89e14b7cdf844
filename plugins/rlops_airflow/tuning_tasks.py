"""The tuning DAG's Airflow tasks: thin TaskFlow wrappers around `rlops_airflow.tuning`.

Imported when the DAG file is parsed, so it imports only Airflow; Optuna, torch and mlflow
load inside the task bodies, on the worker.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

from rlops_airflow.dag_tasks import TRAIN_RETRIES, airflow_run, publish_run_link

if TYPE_CHECKING:
    from rlops_airflow.tuning_settings import TuneSettings

log = logging.getLogger(__name__)


def _settings(params: dict[str, Any]) -> TuneSettings:
    from rlops_airflow.tuning_settings import TuneSettings

    return TuneSettings(**params)


def _tuning() -> ModuleType:
    """`rlops_airflow.tuning`, once MLflow is ready for a task (see `prepare_mlflow`)."""
    from rlops_airflow.task_runtime import prepare_mlflow

    prepare_mlflow()
    from rlops_airflow import tuning

    return tuning


@task(retries=0)
def validate_tuning(params: dict | None = None) -> None:
    """The whole conf, the search space, the env and the study's storage, checked before any
    trial runs; a bad one fails the run at once, naming every bad field. `open_study` runs
    after it, so a bad conf opens no study.

    Not retried: a bad conf stays bad.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from rl_core.envs.spec import EnvError, describe_env
    from rlops_airflow.settings import ConfError, validate_conf
    from rlops_airflow.tuning import TuningError, storage_url
    from rlops_airflow.tuning_settings import TuneSettings

    try:
        settings = validate_conf(params, TuneSettings)
        storage_url()
        describe_env(settings.sac_config().env)
    except (ConfError, EnvError, TuningError) as exc:
        raise AirflowFailException(str(exc)) from None
    space = settings.space().model_dump()
    log.info("%d trials of %s over %s", settings.n_trials, settings.env_id, space)


@task
def open_study(params: dict | None = None, dag_run: Any = None) -> list:
    """Create or continue the Optuna study and book a trial per map index; the indexes."""
    opened = _tuning().open_study(_settings(params), airflow_run(dag_run))
    return opened["map_indexes"]


@task(retries=TRAIN_RETRIES, retry_delay=timedelta(seconds=30))
def trial(slot: int, params: dict | None = None, dag_run: Any = None, ti: Any = None) -> dict:
    """Train and score the trial booked for `slot`; a retry resumes the same trial."""
    tuning = _tuning()
    outcome = tuning.run_trial(_settings(params), airflow_run(dag_run), slot)
    if outcome.get("mlflow_run_id"):
        publish_run_link(ti, outcome["mlflow_run_id"])
    return outcome


@task(multiple_outputs=True, trigger_rule="all_done_min_one_success")
def best_trial(params: dict | None = None, dag_run: Any = None) -> dict[str, Any]:
    """The best trial of this run, and the pipeline conf that trains its config.

    Runs once every trial is done, even if some failed for good: the study holds what the
    others found (the failed ones are marked so), and no completed trial at all fails it.
    """
    from airflow.sdk.exceptions import AirflowFailException

    tuning = _tuning()
    try:
        return tuning.best_trial(_settings(params), airflow_run(dag_run))
    except tuning.TuningError as exc:
        raise AirflowFailException(str(exc)) from None
