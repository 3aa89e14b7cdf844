"""The tuning DAG on the Celery stack: trials in parallel on both workers, one Optuna study in its
own Postgres database, the best config registered through the pipeline with its trial as
lineage; a cleared (retried) trial and trigger add no trial and no pipeline run.

Runs after test_celery_stack.py's sweep and before the worker-loss test, which leaves one worker
dead (tests run file by file, in name order).
"""

from __future__ import annotations

from collections.abc import Iterator

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from devstack import Stack
from devstack.airflow_api import AirflowApi
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.tuning import SLOT
from rlops_registry import tags

pytestmark = pytest.mark.integration

TUNE_DAG = "rlops_sac_tune"
MODEL = "rlops-tuned"
# Four trials of small nets as cheap as the pipeline allows, one torch thread each (two workers
# share two cores); the best one then goes through the pipeline's gate, which lets it through.
TUNE = {
    "total_timesteps": 1000,
    "checkpoint_every": 0,
    "n_trials": 4,
    "trial_episodes": 2,
    "evaluations_per_trial": 2,
    "search_space": {"hidden_sizes": {"choices": [[32, 32]]}, "batch_size": {"choices": [32]}},
    "sac_overrides": {"torch_threads": 1},
    "eval_episodes": 2,
    "record_video": False,
    "min_reward": -100_000,
    "min_speedup": 0,
    "registered_model_name": MODEL,
}


@pytest.fixture(scope="module")
def tune_api(celery_stack: Stack) -> Iterator[AirflowApi]:
    with AirflowApi(celery_stack, dag_id=TUNE_DAG) as api:
        api.open_for_manual_runs()
        yield api


def test_trials_spread_over_the_workers_and_the_best_is_registered_with_its_trial(
    celery_stack: Stack,
    celery_pipeline_api: AirflowApi,
    tune_api: AirflowApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in celery_stack.mlflow_client_env().items():
        monkeypatch.setenv(name, value)
    storage = celery_stack.postgres_dsn("optuna", "postgresql+psycopg2")

    run = tune_api.run_to_end(TUNE)
    run_id = run["dag_run_id"]
    assert run["state"] == "success", tune_api.tasks(run_id)

    # Four trials, on both workers, each its own trial of one study in the Optuna database.
    trials = [ti for ti in tune_api.task_instances(run_id) if ti["task_id"] == "trial"]
    assert sorted(ti["map_index"] for ti in trials) == [0, 1, 2, 3]
    assert {ti["hostname"] for ti in trials} == {w.address for w in celery_stack.celery_workers}
    study_name = AirflowRun(TUNE_DAG, run_id).key
    study = optuna.load_study(study_name=study_name, storage=storage)
    slots = {t.user_attrs[SLOT]: t for t in study.trials}
    assert sorted(slots) == [f"{study_name}/trial={i}" for i in range(4)]
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)

    # The best config went through the pipeline: one version, the trial in its lineage.
    pipeline_run = celery_pipeline_api.wait_for_run(f"tuned__{run_id}")
    assert pipeline_run["state"] == "success", celery_pipeline_api.tasks(f"tuned__{run_id}")
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    assert version.tags[tags.TUNED_BY] == f"{study_name}#{best.number}"
    trained = client.get_run(version.run_id).data
    assert trained.tags[tags.TUNED_BY] == version.tags[tags.TUNED_BY]
    assert float(trained.params["learning_rate"]) == pytest.approx(best.params["learning_rate"])
    assert float(trained.params["tau"]) == pytest.approx(best.params["tau"])

    # A trial and the trigger cleared (as a retry reruns them): no second trial, no second run.
    tune_api.clear_task_instances(run_id, "trial", [1])
    tune_api.clear_task_instances(run_id, "train_best", [-1])
    assert tune_api.wait_for_run(run_id)["state"] == "success", tune_api.tasks(run_id)
    again = optuna.load_study(study_name=study_name, storage=storage).trials
    assert [(t.number, t.state, t.value) for t in again] == [
        (t.number, t.state, t.value) for t in study.trials
    ]
    assert tune_api.tasks(run_id)[("train_best", -1)] == "skipped"
    tuned_runs = celery_pipeline_api.get(f"{celery_pipeline_api.dag_path}/dagRuns")["dag_runs"]
    assert [r["dag_run_id"] for r in tuned_runs if r["dag_run_id"].startswith("tuned__")] == [
        f"tuned__{run_id}"
    ]
