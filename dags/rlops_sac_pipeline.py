"""
# rlops: SAC training pipeline

Nightly at 02:00 UTC, on demand from **Trigger** (the form below validates every field), and
when the champion monitor rolls a drifting champion back (asset `rlops://champion-degraded`):

`validate_conf` → `validate_env` → `sweep_seeds` → `train` → `evaluate` (quality gate)
→ `select_candidate` → `export_torchscript` → `benchmark_latency` → `register` → `promote`
→ `announce_champion` (asset `rlops://champion`, extra: model and version, when it crowned)

A run the rollback started has no conf: `validate_conf` takes the rolled-back version's recipe
from the config its MLflow run logged (env id, packages, kwargs, steps, seed, eval seeds, SAC
fields) into the same registered model, with `drift_retrain_of` = `<model>@v<version>` (in its
XCom and as a tag on the candidate's run and version). At most one such run per model per
`drift_retrain_cooldown_hours` (default 6): a later one skips at once, saying why.

`validate_conf` checks the whole conf first (unknown keys, `sac_overrides`, rules across
fields) and fails the run at once, without retries, naming every bad field; `validate_env` then
builds the env once (any gymnasium id, `env_packages`, `env_kwargs`) and fails the same way if
it cannot be built, SAC cannot act in it, or the registered model already holds another env's
policies. Nothing is trained, registered or aliased for such a run. `train` and `evaluate` are
mapped over `n_seeds` seeds (default 1); the best candidate on the eval seeds goes on, the
others stay as MLflow runs. Each candidate is one MLflow run, and the selected one collects the
gate, latency and registry results (every task has an **MLflow run** link). `evaluate` also
draws one episode of each candidate as a GIF on its run (`video/episode.gif`; `record_video`).
The candidate is registered as a new model version with alias `challenger`; it becomes
`champion` only if its mean return ≥ `min_reward`, its TorchScript speedup ≥ `min_speedup` and
(optionally) it is shown not worse than the current champion: a bootstrap interval of the
per-episode differences on the same eval seeds must stay above -margin. Otherwise the version
is tagged `rejected` with the reasons and `champion` does not move. A rejection is an outcome,
not a failure: see the `promote` task's XCom and log, and the MLflow tags.

A failed run sends one alert (webhook connection `rlops_alert_webhook`, e-mail connection
`rlops_alert_smtp`) naming the failed task, its try, the reason and its log; so does a run
still going 2 h after it was queued. `train` times out after `total_timesteps` / 30
env-steps/s + 5 minutes (a try; a retry resumes from the last checkpoint).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import CronTriggerTimetable, dag
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule

from rlops_airflow.assets import CHAMPION_DEGRADED
from rlops_airflow.dag_tasks import (
    announce_champion,
    benchmark_latency,
    evaluate,
    export_torchscript,
    promote,
    register,
    select_candidate,
    sweep_seeds,
    train,
    validate_conf,
    validate_env,
)
from rlops_airflow.notify import (
    deadline_alerts_enabled,
    deadline_missed,
    failure_notifiers,
    record_failure,
)
from rlops_airflow.params import pipeline_params

DEADLINE = timedelta(hours=2)
"""How long after it is queued a run may go before a person hears of it. The nightly conf
(20,000 steps) takes ~3 min at the measured 181-287 env-steps/s, and at most ~16 min a
`train` try at the 30 env-steps/s floor: four tries (three retries) and the other tasks fit
in 2 h, so past it something is stuck (a lost worker, a queue) or the run's conf is far
bigger than the nightly one. An alert, not a kill: the run goes on."""


@dag(
    dag_id="rlops_sac_pipeline",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=CHAMPION_DEGRADED
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs never race on the champion alias
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": record_failure,
    },
    on_failure_callback=failure_notifiers(),
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=DEADLINE,
        callback=SyncCallback(deadline_missed),
    )
    if deadline_alerts_enabled()
    else None,
    params=pipeline_params(),
    doc_md=__doc__,
    tags=["rlops", "sac", "mlflow"],
)
def rlops_sac_pipeline() -> None:
    settings = validate_env(validate_conf())
    seeds = sweep_seeds(settings)
    trained = train.partial(settings=settings).expand(seed=seeds)
    evaluations = evaluate.partial(settings=settings).expand(trained=trained)
    candidate = select_candidate(evaluations)
    exported = export_torchscript(candidate)
    latency = benchmark_latency(candidate, exported)
    registered = register(candidate, exported, latency, settings)
    promoted = PythonOperator(
        task_id="promote",
        python_callable=promote,
        op_kwargs={
            "candidate": candidate,
            "latency": latency,
            "registered": registered,
            "settings": settings,
        },
    )
    announce_champion(promoted.output)


rlops_sac_pipeline()
