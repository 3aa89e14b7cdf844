"""Bad input is refused before anything runs, and the refusal names the field.

Two gates: the DAG's Params (what the trigger form and the REST API enforce, at trigger time)
and the `validate_conf` task (what Airflow cannot check at trigger time: unknown top-level
keys, and rules across fields). Both come from `PipelineSettings`, so they cannot disagree.
"""

from __future__ import annotations

import os
import sqlite3

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from rl_core.policy.policy_model import log_policy_model
from rl_core.sac.networks import Actor
from rlops_airflow.settings import ConfError, PipelineSettings, experiment_name, validate_conf
from rlops_airflow.tuning_settings import TuneSettings
from rlops_registry.registry import CHAMPION, ModelRegistry
from tests.conftest import REPO, airflow_dags_test, validate_trigger

DAG_ID = "rlops_sac_pipeline"


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags")).dags[DAG_ID]


TRIGGER_REFUSALS = [
    ({"env_id": "Cart Pole"}, "env_id", "does not match"),
    ({"env_id": ""}, "env_id", "does not match"),
    ({"env_packages": ["not a module"]}, "env_packages", "does not match"),
    ({"env_packages": "my_envs"}, "env_packages", "is not of type 'array'"),
    ({"env_kwargs": [1]}, "env_kwargs", "is not of type 'object'"),
    ({"total_timesteps": 10}, "total_timesteps", "less than the minimum of 1000"),
    ({"total_timesteps": 10**9}, "total_timesteps", "greater than the maximum"),
    ({"total_timesteps": "many"}, "total_timesteps", "is not of type 'integer'"),
    ({"seed": -3}, "seed", "less than the minimum"),
    ({"seed": 2**31}, "seed", "greater than the maximum"),
    ({"n_seeds": 9}, "n_seeds", "greater than the maximum"),
    ({"checkpoint_every": -1}, "checkpoint_every", "less than the minimum"),
    ({"eval_episodes": 0}, "eval_episodes", "less than the minimum"),
    ({"eval_seed_start": 10**30}, "eval_seed_start", "greater than the maximum"),
    ({"record_video": "yes"}, "record_video", "is not of type 'boolean'"),
    ({"min_reward": 1e30}, "min_reward", "greater than the maximum"),
    ({"min_reward": "high"}, "min_reward", "is not of type 'number'"),
    ({"min_speedup": 1e30}, "min_speedup", "greater than the maximum"),
    ({"min_speedup": -1}, "min_speedup", "less than the minimum"),
    ({"compare_with_champion": "yes"}, "compare_with_champion", "is not of type 'boolean'"),
    ({"registered_model_name": "bad name!"}, "registered_model_name", "does not match"),
    # sac_overrides: one refusal per kind of field, each naming the field inside it
    ({"sac_overrides": {"hiden_sizes": [8]}}, "sac_overrides", "'hiden_sizes' was unexpected"),
    ({"sac_overrides": {"total_timesteps": 5}}, "sac_overrides", "'total_timesteps' was unexp"),
    ({"sac_overrides": {"learning_rate": -1}}, "sac_overrides", "['learning_rate']"),
    ({"sac_overrides": {"learning_rate": "fast"}}, "sac_overrides", "['learning_rate']"),
    ({"sac_overrides": {"batch_size": 0}}, "sac_overrides", "['batch_size']"),
    ({"sac_overrides": {"hidden_sizes": [64, 0]}}, "sac_overrides", "['hidden_sizes']"),
    ({"sac_overrides": {"hidden_sizes": []}}, "sac_overrides", "['hidden_sizes']"),
    ({"sac_overrides": {"matmul_precision": "fp8"}}, "sac_overrides", "['matmul_precision']"),
    ({"sac_overrides": {"ent_coef": "banana"}}, "sac_overrides", "['ent_coef']"),
    ({"sac_overrides": {"gamma": 1.5}}, "sac_overrides", "['gamma']"),
    ({"sac_overrides": {"buffer_size": 10**12}}, "sac_overrides", "['buffer_size']"),
    ({"sac_overrides": [1, 2]}, "sac_overrides", "is not of type 'object'"),
]


@pytest.mark.parametrize(("conf", "param", "reason"), TRIGGER_REFUSALS)
def test_the_trigger_refuses_a_bad_param_naming_it(dag, conf, param, reason) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError) as refused:
        validate_trigger(dag, conf)
    assert str(refused.value).startswith(f"Invalid input for param {param}:")
    assert reason in str(refused.value)


@pytest.mark.parametrize(("conf", "param", "reason"), TRIGGER_REFUSALS)
def test_validate_conf_refuses_the_same_inputs(conf, param, reason) -> None:
    """Tasks re-check with the same model: nothing the form refuses gets past a task."""
    with pytest.raises(ConfError, match=param):
        validate_conf(conf)


def test_the_params_are_the_settings_model() -> None:
    """One definition: every field of the model but the lineage ones (which triggering DAGs set
    in the conf) is a param with the model's default."""
    from rlops_airflow.params import LINEAGE_FIELDS, pipeline_params

    params = pipeline_params()
    assert list(params) == [n for n in PipelineSettings.model_fields if n not in LINEAGE_FIELDS]
    defaults = PipelineSettings().model_dump(
        mode="json", exclude={"sac_overrides", *LINEAGE_FIELDS}
    )
    assert {name: params[name].value for name in defaults} == defaults
    assert params["sac_overrides"].value == {}


def test_the_model_name_may_be_left_empty_and_then_follows_the_env(dag) -> None:
    """The form sends an emptied text field as null: the param takes it, and the run's model
    is named after its env; a name given is kept."""
    conf = {"env_id": "MountainCarContinuous-v0", "registered_model_name": None}
    validate_trigger(dag, conf)
    assert validate_conf(conf).model_name == "rlops-sac-mountaincarcontinuous"
    validate_trigger(dag, {"registered_model_name": "mine"})
    assert validate_conf({"registered_model_name": "mine"}).model_name == "mine"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"total_timestep": 5}, "total_timestep: unknown parameter; did you mean total_timesteps?"),
        ({"min_rewards": -100}, "min_rewards: unknown parameter; did you mean min_reward?"),
        ({"sac_override": {}}, "sac_override: unknown parameter; did you mean sac_overrides?"),
        (
            {"zzz": 1},
            "zzz: unknown parameter; known: env_id, env_packages, env_kwargs, total_timesteps,",
        ),
        (
            {"total_timesteps": 2_000},  # with the default checkpoint_every of 5,000
            "checkpoint_every (5000) is more than total_timesteps (2000)",
        ),
        (
            {
                "total_timesteps": 1_000,
                "checkpoint_every": 0,
                "sac_overrides": {"learning_starts": 1_000},
            },
            "learning_starts (1000) is not below total_timesteps (1000)",
        ),
        ({"seed": 2**31 - 1, "n_seeds": 2}, "seed + n_seeds - 1 must be at most 2147483647"),
    ],
)
def test_what_only_validate_conf_can_see(dag, conf, message) -> None:
    known = {k: v for k, v in conf.items() if k in dag.params}
    validate_trigger(dag, known)  # the trigger lets it by
    with pytest.raises(ConfError) as refused:
        validate_conf(conf)
    assert message in str(refused.value)


def test_every_bad_field_is_named_at_once() -> None:
    conf = {
        "total_timestep": 5,
        "eval_episodes": 0,
        "sac_overrides": {"hiden_sizes": [8], "learning_rate": -1},
    }
    with pytest.raises(ConfError) as refused:
        validate_conf(conf)
    message = str(refused.value)
    assert "total_timestep: unknown parameter; did you mean total_timesteps?" in message
    assert "eval_episodes: Input should be greater than or equal to 1 (given 0)" in message
    assert "sac_overrides.hiden_sizes: unknown parameter; did you mean hidden_sizes?" in message
    assert "sac_overrides.learning_rate: Input should be greater than 0 (given -1)" in message


def test_a_good_conf_keeps_the_overrides_it_was_given() -> None:
    settings = validate_conf(
        {"total_timesteps": 1_000, "checkpoint_every": 0, "sac_overrides": {"batch_size": 64}}
    )
    config = settings.sac_config()
    assert (config.batch_size, config.total_timesteps, config.learning_rate) == (64, 1_000, 1e-3)


NOT_ALLOWED = (
    "is not allowed to be imported by a run's conf; allowed: rlops_example_envs (rlops.envs "
    "entry points); RLOPS_ALLOWED_ENV_MODULES (comma-separated, on the workers) adds others"
)
FILE_KWARG = (
    "a keyword argument naming a file (xml_file, *_file, *_path, *_dir, *_filename) would let "
    "a run's conf make the env read any file the worker can; set RLOPS_ALLOW_ENV_FILE_KWARGS=1 "
    "on the workers to allow it"
)


@pytest.mark.parametrize("model", [PipelineSettings, TuneSettings])
@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"env_packages": ["os"]}, f"env_packages[0]: module 'os' {NOT_ALLOWED}"),
        (
            {"env_packages": ["rlops_example_envs", "subprocess"]},
            f"env_packages[1]: module 'subprocess' {NOT_ALLOWED}",
        ),
        ({"env_packages": ["builtins"]}, f"env_packages[0]: module 'builtins' {NOT_ALLOWED}"),
        (
            {"env_packages": ["not_installed_envs"]},
            f"env_packages[0]: module 'not_installed_envs' {NOT_ALLOWED}",
        ),
        ({"env_id": "os:Foo-v0"}, f"env_id: module 'os' {NOT_ALLOWED}"),
        ({"env_kwargs": {"xml_file": "/etc/passwd"}}, f"env_kwargs.xml_file: {FILE_KWARG}"),
    ],
)
def test_validate_conf_refuses_what_a_conf_may_not_make_a_worker_do(
    dag, model, conf, message
) -> None:
    """The trigger form cannot know the workers' allowlist; the first task (of the pipeline
    and of the tuning DAG) refuses, with one line naming the field, the module and what is
    allowed, before anything imports it."""
    validate_trigger(dag, conf)
    with pytest.raises(ConfError) as refused:
        validate_conf(conf, model)
    assert str(refused.value) == f"invalid conf: {message}"


def test_the_example_package_and_the_workers_list_are_accepted(monkeypatch) -> None:
    assert validate_conf({"env_id": "PointReach-v0"}).env_id == "PointReach-v0"
    conf = {"env_id": "PointReach-v0", "env_packages": ["rlops_example_envs"]}
    assert validate_conf(conf).env_packages == ["rlops_example_envs"]
    with pytest.raises(ConfError, match="module 'json' is not allowed"):
        validate_conf({"env_packages": ["json"]})
    monkeypatch.setenv("RLOPS_ALLOWED_ENV_MODULES", "json")
    assert validate_conf({"env_packages": ["json"]}, TuneSettings).env_packages == ["json"]
    monkeypatch.setenv("RLOPS_ALLOW_ENV_FILE_KWARGS", "1")
    kwargs = {"xml_file": "model.xml"}
    assert validate_conf({"env_kwargs": kwargs}).env_kwargs == kwargs


def _task_instances(env: dict[str, str]) -> dict[str, tuple[str | None, int]]:
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        (run_id,) = connection.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        rows = connection.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, run_id),
        ).fetchall()
    return {task_id: (state, tries) for task_id, state, tries in rows}


def _nothing_was_trained() -> None:
    client = MlflowClient()
    assert [e.name for e in client.search_experiments()] == ["Default"]  # no run anywhere
    assert client.search_registered_models() == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"env_id": "Pendulam-v1"}, "unknown env id 'Pendulam-v1'; closest registered: Pendulum"),
        ({"env_id": "CartPole-v1"}, "SAC needs a continuous gymnasium.spaces.Box action space"),
    ],
)
def test_an_env_that_cannot_serve_fails_the_run_at_once(
    airflow_db, mlflow_store, conf, message
) -> None:
    """Each kind of env error has its unit test (tests/unit/test_envs.py); here, two of them
    as a run meets them."""
    env = {**os.environ, **airflow_db}
    done = airflow_dags_test(DAG_ID, env, {**conf, "registered_model_name": "bad-env"})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert message in done.stdout + done.stderr
    tasks = _task_instances(env)
    assert tasks["validate_conf"] == ("success", 1)
    assert tasks["validate_env"] == ("failed", 1)  # no retry: a wrong env stays wrong
    assert all(state != "success" for t, (state, _) in tasks.items() if not t.startswith("valid"))
    _nothing_was_trained()


@pytest.mark.slow
def test_a_typo_fails_the_run_at_once_and_trains_nothing(airflow_db, mlflow_store) -> None:
    env = {**os.environ, **airflow_db}
    done = airflow_dags_test(DAG_ID, env, {"total_timestep": 5, "registered_model_name": "typo"})
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "total_timestep: unknown parameter; did you mean total_timesteps?" in output
    tasks = _task_instances(env)
    assert tasks["validate_conf"] == ("failed", 1)  # no retry: a bad conf stays bad
    assert all(state != "success" for t, (state, _) in tasks.items() if t != "validate_conf")
    _nothing_was_trained()


@pytest.mark.slow
def test_a_run_on_another_env_than_its_models_fails_the_run_at_once(
    airflow_db, mlflow_store
) -> None:
    """The model already holds Pendulum policies: a MountainCar run under its name stops in
    validate_env, before training, and the model keeps its one version and its champion."""
    torch.manual_seed(0)
    actor = Actor(3, 1, (8, 8), torch.tensor([-2.0]), torch.tensor([2.0]))
    with mlflow.start_run() as run:
        logged = log_policy_model(actor, "Pendulum-v1", run.info.run_id)
    registry = ModelRegistry("pendulum-policies")
    version = registry.register(
        logged.model_uri, logged.model_id, run.info.run_id, "earlier/run", {"env_id": "Pendulum-v1"}
    )
    registry.crown(version.version)

    env = {**os.environ, **airflow_db}
    conf = {"env_id": "MountainCarContinuous-v0", "registered_model_name": "pendulum-policies"}
    done = airflow_dags_test(DAG_ID, env, conf)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        "registered model 'pendulum-policies' holds policies of Pendulum-v1 (latest v1); this "
        "run trains MountainCarContinuous-v0" in done.stdout + done.stderr
    )
    tasks = _task_instances(env)
    assert tasks["validate_env"] == ("failed", 1)
    assert all(state != "success" for t, (state, _) in tasks.items() if not t.startswith("valid"))
    assert len(MlflowClient().search_model_versions("name = 'pendulum-policies'")) == 1
    assert registry.alias(CHAMPION).version == version.version
    assert MlflowClient().get_experiment_by_name(experiment_name()) is None  # no candidate run
