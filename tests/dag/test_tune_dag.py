"""The tuning DAG: wired as designed, and a bad conf (the search space above all) refused at
trigger time or by its first task, naming the field."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from devstack.stack import OPTUNA_STORAGE_ENV
from rlops_airflow.settings import ConfError, PipelineSettings, validate_conf
from rlops_airflow.tuning import STORAGE_ENV
from rlops_airflow.tuning_settings import TuneSettings
from tests.conftest import REPO, validate_trigger

DAG_ID = "rlops_sac_tune"
ORDER = ["validate_tuning", "open_study", "trial", "best_trial", "train_best"]


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_tasks_run_in_the_designed_order(dag) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert set(dag.task_ids) == set(ORDER)
    for upstream, downstream in itertools.pairwise(ORDER):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert isinstance(dag.get_task("trial"), MappedOperator)
    dag.check_cycle()


def test_retries_and_trigger_rules(dag) -> None:
    assert dag.get_task("validate_tuning").retries == 0  # a bad conf stays bad
    trial = dag.get_task("trial")
    assert trial.partial_kwargs["retries"] == 3
    assert trial.partial_kwargs["retry_delay"] >= timedelta(seconds=30)
    # one trial that failed for good does not lose what the others found
    assert dag.get_task("best_trial").trigger_rule == "all_done_min_one_success"
    assert dag.schedule is None  # on demand only


def test_the_best_config_goes_to_the_pipeline_once(dag) -> None:
    trigger = dag.get_task("train_best")
    assert trigger.trigger_dag_id == "rlops_sac_pipeline"
    assert trigger.trigger_run_id == "tuned__{{ run_id }}"
    assert trigger.skip_when_already_exists  # a retried trigger starts no second run
    assert trigger.fail_when_dag_is_paused  # rather than a run that never starts


def test_the_form_is_the_settings_model_without_the_lineage_field(dag) -> None:
    lineage = {"tuned_by", "drift_retrain_of"}
    assert list(dag.params) == [name for name in TuneSettings.model_fields if name not in lineage]
    validate_trigger(dag, {})
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.description, name
    assert set(PipelineSettings.model_fields) - lineage <= set(dag.params)


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 65}, "n_trials"),
        ({"study_name": "my study"}, "study_name"),
        ({"search_space": {"learnig_rate": {"low": 1e-3, "high": 1e-2}}}, "search_space"),
        ({"search_space": {"gamma": {"choices": []}}}, "search_space"),
        ({"search_space": {"tau": {"low": "small", "high": 0.1}}}, "search_space"),
        ({"search_space": {"batch_size": {"choices": [0]}}}, "search_space"),
        ({"trial_episodes": 0}, "trial_episodes"),
        ({"pruning": "yes"}, "pruning"),
    ],
)
def test_the_trigger_refuses_a_bad_param_naming_it(dag, conf: dict, field: str) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match=field):
        validate_trigger(dag, conf)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            {"search_space": {"learnig_rate": {}}},
            "search_space.learnig_rate: unknown parameter; did you mean learning_rate?",
        ),
        (
            {"search_space": {"tau": {"low": 0.05, "high": 0.01}}},
            "search_space.tau: empty range: low 0.05 is above high 0.01",
        ),
        (
            {"search_space": {"gamma": {"choices": ["0.99"]}}},
            "search_space.gamma.choices.0: Input should be a valid number",
        ),
        ({"n_trial": 4}, "n_trial: unknown parameter; did you mean n_trials?"),
        ({"trial_seed_start": 1040}, "trial_seed_start: the trial seeds 1040..1049 overlap"),
        ({"sac_overrides": {"tau": 0.01}}, "sac_overrides.tau: the search decides it"),
        ({"tuned_by": "s#1"}, "tuned_by is set by the tuning DAG itself"),
    ],
)
def test_the_first_task_refuses_what_the_form_cannot_check(conf: dict, message: str) -> None:
    with pytest.raises(ConfError) as refused:
        validate_conf(conf, TuneSettings)
    assert message in str(refused.value)


def test_the_triggered_conf_is_a_valid_pipeline_conf_with_the_trial_lineage() -> None:
    settings = validate_conf(
        {
            "env_id": "Pendulum-v1",
            "total_timesteps": 5_000,
            "n_trials": 4,
            "registered_model_name": "tuned",
            "sac_overrides": {"torch_threads": 1},
        },
        TuneSettings,
    )
    trial = {"learning_rate": 2e-3, "batch_size": 128, "hidden_sizes": [64, 64], "gamma": 0.98}
    conf = settings.pipeline_conf(trial, "rlops_sac_tune/manual__1#3")
    pipeline = validate_conf(conf)  # the pipeline's own validation accepts it
    assert pipeline.tuned_by == "rlops_sac_tune/manual__1#3"
    assert pipeline.total_timesteps == 5_000 and pipeline.registered_model_name == "tuned"
    config = pipeline.sac_config()
    assert (config.learning_rate, config.batch_size, config.gamma) == (2e-3, 128, 0.98)
    assert config.hidden_sizes == (64, 64) and config.torch_threads == 1


def test_devstack_gives_tasks_the_storage_the_tuning_code_reads() -> None:
    assert OPTUNA_STORAGE_ENV == STORAGE_ENV
