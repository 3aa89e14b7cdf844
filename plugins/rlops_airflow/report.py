"""Print what the latest pipeline run produced, and how to look at it in the UIs.

python -m rlops_airflow.report     (after `source scripts/local-env.sh`)
"""

from __future__ import annotations

import json
import sys

from mlflow import MlflowClient
from mlflow.entities import Run

from rl_core.evaluation.episodes import (
    EVAL_MEAN_RETURN,
    EVAL_RETURN_CI_HIGH,
    EVAL_RETURN_CI_LOW,
    EVAL_STD_RETURN,
)
from rlops_airflow.mlflow_run import run_url
from rlops_airflow.settings import experiment_name
from rlops_registry import tags as tag_names
from rlops_registry.registry import CHAMPION, ModelRegistry


def latest_pipeline_run(dag_id: str = "rlops_sac_pipeline") -> Run | None:
    """The MLflow run of the candidate the latest DAG run selected."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name())
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{tag_names.AIRFLOW_DAG_ID}` = '{dag_id}' "
        f"and tags.`{tag_names.SELECTED}` = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def main() -> int:
    run = latest_pipeline_run()
    if run is None:
        print(f"no pipeline run in MLflow experiment {experiment_name()!r}")
        return 1
    tags, metrics = run.data.tags, run.data.metrics
    params = run.data.params
    print(f"Airflow run      {tags.get(tag_names.AIRFLOW_RUN_ID)}")
    print(
        f"MLflow run       {run.info.run_id}  ({params.get('env_id')}, "
        f"{params.get('total_timesteps')} steps, seed {params.get('seed')})"
    )
    if EVAL_MEAN_RETURN in metrics:
        seeds = json.loads(params.get("eval_seeds", "[]"))
        interval = ""
        if EVAL_RETURN_CI_LOW in metrics and EVAL_RETURN_CI_HIGH in metrics:
            interval = f" [{metrics[EVAL_RETURN_CI_LOW]:.1f}, {metrics[EVAL_RETURN_CI_HIGH]:.1f}]"
        print(
            f"mean return      {metrics[EVAL_MEAN_RETURN]:.1f}{interval} (std "
            f"{metrics.get(EVAL_STD_RETURN, 0):.1f}) on {len(seeds)} eval seeds "
            f"(reward gate: {tags.get(tag_names.GATE_RESULT, '?')})"
        )
    if "speedup_b1" in metrics:
        print(
            f"TorchScript      x{metrics['speedup_b1']:.2f} faster than eager at batch 1 "
            f"({metrics['latency_scripted_median_us_b1']:.1f} µs vs "
            f"{metrics['latency_eager_median_us_b1']:.1f} µs median)"
        )
    version, model_name = tags.get(tag_names.MODEL_VERSION), tags.get(tag_names.MODEL_NAME)
    if version and model_name:
        champion = ModelRegistry(model_name).alias(CHAMPION)
        is_champion = champion is not None and str(champion.version) == version
        print(
            f"model version    {model_name} v{version} "
            f"{'-> champion' if is_champion else '(not champion)'}"
        )
    print(f"outcome          {tags.get(tag_names.OUTCOME, 'pipeline did not reach promote')}")
    print()
    print("Open the results (each in its own terminal, from the repo root):")
    print(
        "  MLflow UI:  source scripts/local-env.sh && "
        'mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI" --host 127.0.0.1 --port 5000'
    )
    print(f"             then {run_url(run.info.run_id)}")
    print("  Airflow UI: source scripts/local-env.sh && airflow api-server")
    print(f"             then {tags.get(tag_names.AIRFLOW_UI_URL, 'http://127.0.0.1:8080')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
