"""
# rlops: champion monitor

Hourly (minute 30), when the pipeline crowns a new champion (asset `rlops://champion`), and on
demand from **Trigger**:

`models_to_monitor` → for each model: `evaluate_champion` → `drift_guard`, and beside them
`judge_canary`

`models_to_monitor` lists the registered models to check: the one `registered_model_name`
names, else every model whose `champion` is an rlops policy (one per env the pipeline has
trained). None: skipped. It reads the run's params through `MonitorSettings` (the Params
below are generated from it): a key that is not one of them, or a bad value, fails it at once,
without retries, naming the field as the pipeline's `validate_conf` does. Each model's tasks
are mapped instances named after the model; a drift or a failure in one does not stop the
others.

`evaluate_champion` gathers the online returns of the version the registry alias `champion`
points to: the episodes clients reported to the policy server in the last
`served_window_minutes` when there are at least `min_served_episodes`, else `episodes`
deterministic episodes on fresh env seeds (derived from the run's date), played by the policy
server's own loader. It logs them as a run in the `rlops-monitoring` experiment (which
evidence it used, the returns, their mean) and tags the version (`rlops.online_return`). The
version's **reference** is always a simulator sample (`reference_episodes` episodes): its
first simulator check, or a run made just before its first served check. Never served traffic,
whose first hour a client could forge to make every later honest hour look like a drift. No
champion: skipped.

`drift_guard` compares the check with the reference: a **breach** when the whole
`confidence` interval of the difference of means (online - reference) is below
`-drift_tolerance * |reference mean|`. Each check logs the difference and its interval. With
`confirm_with_simulator` (the default), a breach on served traffic is re-checked on `episodes`
fresh simulator episodes (logged on the check's run) and counts only if the simulator breaches
too; an unconfirmed one is tagged (`rlops.drift` = `unconfirmed` on the check's run,
`rlops.drift.last_check` in words on the run and the version), logged as a warning, and moves
nothing. After
`breaches_to_rollback` consecutive counted breaches `champion` moves back to
`previous_champion`, both versions are tagged with the reason and time (`rlops.drift.*`,
`rlops.rollback.*`), and the task fails without retrying; the run's failure alert (one per
failed run, naming the model's task) goes to the connections `rlops_alert_webhook` and
`rlops_alert_smtp` (else to the log). With no previous champion no alias moves: alert only.
Either way `announce_degraded` (the guard's teardown: it runs although the guard failed, and
leaves the run failed) emits the asset `rlops://champion-degraded` (extra: model, rolled-back
and restored versions, reason), which starts the pipeline's retrain of that version's recipe.

`judge_canary` compares `challenger` with `champion` on the returns the server's canary
split sent each of them (same `confidence`, `noninferiority_margin` as the pipeline's
gate), logs the verdict in MLflow and on the challenger (`rlops.canary.verdict`), and crowns
the challenger on a passing verdict only if `promote_on_canary` is set, its gates passed and,
with `confirm_with_simulator`, the simulator agrees: both versions on the same `episodes`
fresh simulator seeds, the pipeline's paired promotion rule. The verdict says which evidence
disagreed. Skipped without a distinct challenger.

**Risk of turning `confirm_with_simulator` off** (for a real world the simulator does not
model): served evidence then rolls back and crowns alone. The policy server only counts
authenticated reports bound to an episode it served (a signed ticket) and within the env's
bounds, but a client holding a report key can still lie within those bounds: enough such
reports roll back a healthy champion or crown a worse challenger.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, dag, task_group
from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule

from rlops_airflow.assets import CHAMPION
from rlops_airflow.monitor_settings import MonitorSettings
from rlops_airflow.monitoring_tasks import (
    announce_degraded,
    drift_guard,
    evaluate_champion,
    judge_canary,
    models_to_monitor,
)
from rlops_airflow.notify import failure_notifiers, record_failure
from rlops_airflow.params import settings_params


@dag(
    dag_id="rlops_champion_monitor",
    schedule=AssetOrTimeSchedule(  # and at once when the pipeline crowns a new champion
        timetable=CronTriggerTimetable("30 * * * *", timezone="UTC"), assets=CHAMPION
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two checks never race on the champion alias
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": record_failure,
    },
    on_failure_callback=failure_notifiers(),  # one alert per failed run
    params=settings_params(MonitorSettings),
    doc_md=__doc__,
    tags=["rlops", "monitoring", "mlflow"],
)
def rlops_champion_monitor() -> None:
    monitor_model.expand(model_name=models_to_monitor())


@task_group
def monitor_model(model_name: str) -> None:
    """One model's checks; a drift or a failure in one never stops another's."""
    guard = drift_guard(evaluate_champion(model_name))
    guard >> announce_degraded(model_name).as_teardown()
    judge_canary(model_name)


rlops_champion_monitor()
