"""The tuning steps against the real stack: the Optuna study in its own Postgres database, trials
trained into the MLflow server. What a retry, a pruned trial and the pick of the best do."""

from __future__ import annotations

import uuid

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from devstack import Stack
from rl_core.common.search_space import preset_point
from rlops_airflow import tuning
from rlops_airflow.mlflow_run import AirflowRun, find_keyed_run
from rlops_airflow.settings import validate_conf
from rlops_airflow.tuning_settings import TuneSettings
from rlops_registry import tags

pytestmark = pytest.mark.integration

SMALL = {"hidden_sizes": {"choices": [[32, 32]]}, "batch_size": {"choices": [32]}}
"""A space of small nets, so trials take seconds; the other dimensions keep their range."""
TINY = {
    "total_timesteps": 1000,
    "checkpoint_every": 0,
    "n_trials": 3,
    "trial_episodes": 2,
    "evaluations_per_trial": 2,
    "sac_overrides": {"torch_threads": 1},
    "search_space": SMALL,
}


@pytest.fixture
def storage(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """The stack's Optuna database and MLflow server, as a worker's environment gives them."""
    url = stack.postgres_dsn("optuna", "postgresql+psycopg2")
    monkeypatch.setenv(tuning.STORAGE_ENV, url)
    for name, value in stack.mlflow_client_env().items():
        monkeypatch.setenv(name, value)
    return url


def _airflow_run() -> AirflowRun:
    return AirflowRun("rlops_sac_tune", f"manual__{uuid.uuid4().hex}")


def _trials(name: str, storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def test_a_retried_trial_reuses_its_trial_and_run_and_the_best_goes_on(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TuneSettings(**{**TINY, "search_space": {}})  # the default space: preset inside
    airflow = _airflow_run()
    name = tuning.open_study(settings, airflow)["study_name"]
    tuning.open_study(settings, airflow)  # a retried open_study books nothing more
    booked = _trials(name, storage)
    assert [t.state for t in booked] == [TrialState.WAITING] * 3

    # Given an attempt at slot 1 that dies once its config is drawn and its run exists,
    def killed(*args: object, **kwargs: object) -> int:
        raise RuntimeError("worker lost")

    with monkeypatch.context() as patched:
        patched.setattr(tuning, "train_in_run", killed)
        with pytest.raises(RuntimeError, match="worker lost"):
            tuning.run_trial(settings, airflow, 1)
    (drawn,) = [t for t in _trials(name, storage) if t.state == TrialState.RUNNING]
    # when the task is retried, and retried again once the trial finished,
    retried = tuning.run_trial(settings, airflow, 1)
    again = tuning.run_trial(settings, airflow, 1)
    # then it is the same trial, config and MLflow run, scored once.
    assert (retried["number"], retried["params"]) == (drawn.number, drawn.params)
    assert retried["state"] == "COMPLETE" and again == retried
    assert retried["mlflow_run_id"] == find_keyed_run(airflow.trial_key(1), MlflowClient())
    assert len(_trials(name, storage)) == 3

    # The first slot runs the preset: the baseline the others are measured against.
    baseline = tuning.run_trial(settings, airflow, 0)
    assert baseline["params"] == preset_point("Pendulum-v1", act_dim=1)

    # Slot 2 never ran (its task failed for good): the best of the others goes on.
    best = tuning.best_trial(settings, airflow)
    states = {t.number: t.state for t in _trials(name, storage)}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.COMPLETE, 2: TrialState.FAIL}
    winner = max((baseline, retried), key=lambda t: t["value"])
    assert (best["number"], best["value"]) == (winner["number"], winner["value"])
    pipeline = validate_conf(best["conf"])
    assert pipeline.tuned_by == f"{name}#{winner['number']}"
    assert pipeline.sac_config().learning_rate == winner["params"]["learning_rate"]
    run = MlflowClient().get_run(winner["mlflow_run_id"])
    assert run.data.tags[tags.TUNING_TRIAL] == str(winner["number"])


def test_a_trial_below_the_median_is_pruned_and_stops_training(storage: str) -> None:
    settings = TuneSettings(**{**TINY, "preset_trial": False, "pruning_startup_trials": 1})
    airflow = _airflow_run()
    name = tuning.open_study(settings, airflow)["study_name"]
    # an earlier trial whose every evaluation beat anything Pendulum can score
    unbeatable = {step: 0.0 for step in range(0, settings.total_timesteps + 1, 100)}
    optuna.load_study(study_name=name, storage=storage).add_trial(
        optuna.trial.create_trial(value=0.0, intermediate_values=unbeatable)
    )

    pruned = tuning.run_trial(settings, airflow, 0)

    run = MlflowClient().get_run(pruned["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert tags.TRAINED not in run.data.tags  # stopped before its last step
    history = MlflowClient().get_metric_history(run.info.run_id, "progress_eval_mean_return")
    assert [m.step for m in history] == [600]  # the first evaluation past the warm-up third
    # Optuna keeps a pruned trial's last reported value as its value
    assert (pruned["state"], pruned["value"]) == ("PRUNED", history[0].value)
