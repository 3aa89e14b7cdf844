"""
# rlops: champion monitor

Hourly (minute 30), and on demand from **Trigger**:

`evaluate_champion` → `drift_guard`

`evaluate_champion` loads the version the registry alias `champion` points to, exactly as the
policy server does, plays `episodes` deterministic episodes on fresh env seeds (derived from the
run's date) and logs the online mean return to MLflow: a run in the `rlops-monitoring`
experiment tagged with the model version, and the version tag `rlops.online_return`. No
champion: both tasks are skipped. A conf key that is not one of the Params below fails it at
once, naming the key.

`drift_guard` compares it with the return recorded when the version was registered (tag
`reward`). Drift means **online < recorded - tolerance * |recorded|** (returns are negative for
Pendulum: recorded -150 with 5% drifts below -157.5). On drift `champion` moves back to
`previous_champion`, both versions are tagged with the reason and time (`rlops.drift.*`,
`rlops.rollback.*`), and the task fails without retrying; the failure alert goes to the
webhook in the Airflow Variable `rlops_alert_webhook_url` (else to the task log). With no
previous champion no alias moves: alert only.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from rlops_airflow.monitoring_tasks import alert_on_failure, drift_guard, evaluate_champion

PARAMS = {
    "registered_model_name": Param(
        "rlops-sac-pendulum",
        type="string",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$",
        title="Registered model name",
        description="MLflow registry name whose `champion` is monitored.",
    ),
    "episodes": Param(
        200,
        type="integer",
        minimum=1,
        maximum=2000,
        title="Episodes",
        description="Deterministic episodes on fresh env seeds (Pendulum: about 30 ms each). "
        "Fewer make a noisier mean: a good Pendulum policy's episodes spread by about 90.",
    ),
    "drift_tolerance": Param(
        0.05,
        type="number",
        minimum=0,
        maximum=1,
        title="Drift tolerance",
        description="Roll back when the online mean return is below the recorded one by more "
        "than this fraction of the recorded return's magnitude (0.05 = 5%).",
    ),
}


@dag(
    dag_id="rlops_champion_monitor",
    schedule="30 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two checks never race on the champion alias
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": alert_on_failure,
    },
    params=PARAMS,
    doc_md=__doc__,
    tags=["rlops", "monitoring", "mlflow"],
)
def rlops_champion_monitor() -> None:
    drift_guard(evaluate_champion())


rlops_champion_monitor()
