"""
# rlops: SAC hyperparameter search

On demand from **Trigger**: an Optuna study (TPE sampler, median pruner) over SAC's
hyperparameters for one env, then the best config through the normal pipeline.

`validate_tuning` → `open_study` → `trial` (mapped, `n_trials`) → `best_trial` → `train_best`

`validate_tuning` checks the whole conf first, the search space included (an unknown
dimension, an empty range or a value SAC refuses fails the run at once, naming it), builds
the env and checks that the study's database (`RLOPS_OPTUNA_STORAGE`) is configured.
`open_study` creates the study in its own database on the shared Postgres (or continues the
one named by `study_name`) and books one trial per map index, the first running the env's
preset as the baseline. Each mapped `trial` draws its config when it starts, trains it for
`total_timesteps` steps with `evaluations_per_trial` evaluations on the trial seeds (the
pruner stops a trial below the median of earlier ones), and scores its final policy on those
seeds; trials run in parallel on whatever workers are free, and a retried one resumes the
same trial from its checkpoint. `best_trial` picks the best score of this run and writes the
table of trials to its log; `train_best` triggers **rlops_sac_pipeline** (run id
`tuned__<this run id>`) with this run's pipeline fields and the best config, so it goes
through train → gate → export → benchmark → register → promote like any other, and its
MLflow run and model version carry `rlops.tuned_by = <study>#<trial number>`.

A failed run sends one alert through the connections `rlops_alert_webhook` and
`rlops_alert_smtp` (the failed task, its try, the reason and a link to its log).
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag

from rlops_airflow.notify import failure_notifiers, record_failure
from rlops_airflow.params import LINEAGE_FIELDS, settings_params
from rlops_airflow.tuning_settings import TuneSettings
from rlops_airflow.tuning_tasks import best_trial, open_study, trial, validate_tuning

PIPELINE_DAG_ID = "rlops_sac_pipeline"


@dag(
    dag_id="rlops_sac_tune",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"on_failure_callback": record_failure},
    on_failure_callback=failure_notifiers(),  # one alert per failed run
    params=settings_params(TuneSettings, omit=LINEAGE_FIELDS),
    doc_md=__doc__,
    tags=["rlops", "sac", "optuna", "mlflow"],
)
def rlops_sac_tune() -> None:
    slots = open_study()
    validate_tuning() >> slots
    trials = trial.expand(slot=slots)
    best = best_trial()
    trials >> best
    TriggerDagRunOperator(
        task_id="train_best",
        trigger_dag_id=PIPELINE_DAG_ID,
        trigger_run_id="tuned__{{ run_id }}",
        conf=best["conf"],
        skip_when_already_exists=True,  # a retry never starts a second pipeline run
        fail_when_dag_is_paused=True,
    )


rlops_sac_tune()
