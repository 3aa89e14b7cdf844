"""
# rlops: SAC training pipeline

Nightly at 02:00 UTC, and on demand from **Trigger** (the form below validates every field):

`sweep_seeds` → `train` → `evaluate` (quality gate) → `select_candidate` → `export_torchscript`
→ `benchmark_latency` → `register` → `promote`

`train` and `evaluate` are mapped over `n_seeds` seeds (default 1); the best candidate on the
eval seeds goes on, the others stay as MLflow runs. Each candidate is one MLflow run, and the
selected one collects the gate, latency and registry results (every task has an **MLflow
run** link). The candidate is
registered as a new model version with alias `challenger`; it becomes `champion` only if its
mean return ≥ `min_reward`, its TorchScript speedup ≥ `min_speedup` and (optionally) it is not
worse than the current champion on the same eval seeds. Otherwise the version is tagged
`rejected` with the reasons and `champion` does not move. A rejection is an outcome, not a
failure: see the `promote` task's XCom and log, and the MLflow tags.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import Param, dag

from rlops_airflow.dag_tasks import (
    benchmark_latency,
    evaluate,
    export_torchscript,
    promote,
    register,
    select_candidate,
    sweep_seeds,
    train,
)

TRAINING, EVALUATION, PROMOTION, ADVANCED = "Training", "Evaluation", "Promotion", "Advanced"

PARAMS = {
    "env_id": Param(
        "Pendulum-v1",
        type="string",
        enum=["Pendulum-v1", "MountainCarContinuous-v0"],
        title="Environment",
        description="Gymnasium environment with a continuous (Box) action space.",
        section=TRAINING,
    ),
    "total_timesteps": Param(
        20_000,
        type="integer",
        minimum=1_000,
        maximum=2_000_000,
        title="Total timesteps",
        description="Environment steps to train for (1,000 to 2,000,000).",
        section=TRAINING,
    ),
    "seed": Param(
        0,
        type="integer",
        minimum=0,
        maximum=2**31 - 1,
        title="Seed",
        description="Drives network init, exploration, replay sampling and env resets.",
        section=TRAINING,
    ),
    "n_seeds": Param(
        1,
        type="integer",
        minimum=1,
        maximum=8,
        title="Seeds to sweep",
        description="Train seeds seed..seed+n-1 in parallel; the best one goes to the gate.",
        section=TRAINING,
    ),
    "checkpoint_every": Param(
        5_000,
        type="integer",
        minimum=0,
        maximum=1_000_000,
        title="Checkpoint every (steps)",
        description="Upload a checkpoint this often; a retried train task resumes from it. "
        "0: only at the end.",
        section=TRAINING,
    ),
    "eval_episodes": Param(
        10,
        type="integer",
        minimum=1,
        maximum=100,
        title="Evaluation episodes",
        description="Deterministic episodes, one per env seed.",
        section=EVALUATION,
    ),
    "eval_seed_start": Param(
        1000,
        type="integer",
        minimum=0,
        title="First evaluation seed",
        description="Episodes use env seeds start, start+1, ... (default 1000..1009).",
        section=EVALUATION,
    ),
    "min_reward": Param(
        -250.0,
        type="number",
        title="Minimum mean return",
        description="Quality gate: the candidate's mean return must reach this.",
        section=PROMOTION,
    ),
    "min_speedup": Param(
        1.5,
        type="number",
        minimum=0,
        title="Minimum TorchScript speedup",
        description="Eager over exported median latency at batch 1 must reach this.",
        section=PROMOTION,
    ),
    "compare_with_champion": Param(
        True,
        type="boolean",
        title="Must beat the current champion",
        description="Also require a return not worse than the champion's on the same seeds.",
        section=PROMOTION,
    ),
    "registered_model_name": Param(
        "rlops-sac-pendulum",
        type="string",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$",
        title="Registered model name",
        description="MLflow registry name (letters, digits, '.', '_', '-').",
        section=PROMOTION,
    ),
    "sac_overrides": Param(
        {},
        type="object",
        title="SAC overrides",
        description='Any other SACConfig field, e.g. {"hidden_sizes": [64, 64]}.',
        section=ADVANCED,
    ),
}


@dag(
    dag_id="rlops_sac_pipeline",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs never race on the champion alias
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params=PARAMS,
    doc_md=__doc__,
    tags=["rlops", "sac", "mlflow"],
)
def rlops_sac_pipeline() -> None:
    evaluations = evaluate.expand(trained=train.expand(seed=sweep_seeds()))
    candidate = select_candidate(evaluations)
    exported = export_torchscript(candidate)
    latency = benchmark_latency(candidate)
    registered = register(candidate, latency)
    promotion = PythonOperator(
        task_id="promote",
        python_callable=promote,
        op_kwargs={"candidate": candidate, "registered": registered},
    )
    exported >> latency >> registered >> promotion


rlops_sac_pipeline()
