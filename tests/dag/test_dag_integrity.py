"""What CI exists to catch: a DAG that does not load, is wired wrong, or accepts bad input."""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys
import warnings
from datetime import timedelta

import pytest

from tests.conftest import REPO, validate_trigger

DAG_ID = "rlops_sac_pipeline"
ORDER = [
    "validate_conf",
    "validate_env",
    "sweep_seeds",
    "train",
    "evaluate",
    "select_candidate",
    "export_torchscript",
    "benchmark_latency",
    "register",
    "promote",
    "announce_champion",
]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(REPO / "dags"))
    bag.caught_warnings = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    return bag


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_dagbag_loads_without_errors_or_deprecations(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dag_ids
    assert [str(w.message) for w in dagbag.caught_warnings] == []


def test_tasks_run_in_the_designed_order(dag) -> None:
    assert set(dag.task_ids) == set(ORDER)
    for upstream, downstream in itertools.pairwise(ORDER):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert dag.get_task("validate_conf").upstream_task_ids == set()
    assert dag.get_task("announce_champion").downstream_task_ids == set()
    dag.check_cycle()  # raises on a cycle


def test_schedule_and_run_policy(dag) -> None:
    from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule

    from rlops_airflow.assets import CHAMPION, CHAMPION_DEGRADED

    # nightly, or when the monitor rolls a champion back; it announces the champions it crowns
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timetable.timezone) == "UTC"
    assert dag.timetable.asset_condition == CHAMPION_DEGRADED
    outlets = {task.task_id: task.outlets for task in dag.tasks if task.outlets}
    assert outlets == {"announce_champion": [CHAMPION]}
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    never_retried = {"validate_conf", "validate_env"}  # a bad conf or env stays bad
    for task in dag.tasks:
        if task.task_id in never_retried:
            assert task.retries == 0, task.task_id
        else:
            assert task.retries >= 2, task.task_id
            assert task.retry_delay >= timedelta(seconds=30), task.task_id
    assert dag.get_task("train").retries == 3
    assert dag.doc_md and "champion" in dag.doc_md


def test_train_and_evaluate_are_mapped_over_the_sweep(dag) -> None:
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("train"), MappedOperator)
    assert isinstance(dag.get_task("evaluate"), MappedOperator)
    assert not isinstance(dag.get_task("select_candidate"), MappedOperator)
    assert dag.params["n_seeds"] == 1


def test_promote_is_a_python_operator(dag) -> None:
    from airflow.providers.standard.operators.python import PythonOperator

    assert type(dag.get_task("promote")) is PythonOperator


def test_defaults_are_valid_and_documented(dag) -> None:
    validate_trigger(dag, {})
    schemas = {name: dag.params.get_param(name) for name in dag.params}
    for name, param in schemas.items():
        assert param.schema.get("title"), name
        assert param.description, name
        assert param.schema.get("section") in {"Training", "Evaluation", "Promotion", "Advanced"}
    assert dag.params["total_timesteps"] == 20_000
    assert dag.params["min_reward"] == -250.0


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"total_timesteps": 10}, "total_timesteps"),
        ({"total_timesteps": "many"}, "total_timesteps"),
        ({"env_id": "Cart Pole"}, "env_id"),
        ({"env_packages": ["not a module"]}, "env_packages"),
        ({"env_kwargs": [1]}, "env_kwargs"),
        ({"eval_episodes": 0}, "eval_episodes"),
        ({"min_speedup": -1}, "min_speedup"),
        ({"registered_model_name": "bad name!"}, "registered_model_name"),
        ({"compare_with_champion": "yes"}, "compare_with_champion"),
        ({"seed": -3}, "seed"),
        ({"n_seeds": 9}, "n_seeds"),
    ],
)
def test_bad_params_are_refused_naming_the_field(dag, conf, field) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}:"):
        validate_trigger(dag, conf)


def _supplied_arguments(task) -> set[str]:
    """Callable parameters the DAG fills: positional op_args, op_kwargs and mapped kwargs."""
    names = list(inspect.signature(task.python_callable).parameters)
    partial = getattr(task, "partial_kwargs", {})  # what a mapped task was given up front
    positional = getattr(task, "op_args", None) or partial.get("op_args", [])
    keyword = getattr(task, "op_kwargs", None) or partial.get("op_kwargs", {})
    expand = getattr(task, "op_kwargs_expand_input", None)
    mapped = expand.value if expand is not None else {}
    return set(names[: len(positional)]) | set(keyword) | set(mapped)


def test_no_taskflow_argument_is_named_after_a_context_key(dag) -> None:
    """Airflow refuses such an argument only at run time ("... is reserved")."""
    from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS

    for task in dag.tasks:
        supplied = _supplied_arguments(task)
        assert not supplied & KNOWN_CONTEXT_KEYS, (task.task_id, supplied & KNOWN_CONTEXT_KEYS)
        if task.task_type == "PythonOperator":
            continue
        for name, parameter in inspect.signature(task.python_callable).parameters.items():
            if name in KNOWN_CONTEXT_KEYS:  # asked of Airflow's context: must default to None
                assert parameter.default is None, (task.task_id, name)


def test_parsing_the_dag_imports_no_ml_library() -> None:
    code = (
        "import sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "top = {name.split('.')[0] for name in sys.modules}\n"
        "heavy = sorted(top & {'torch', 'gymnasium', 'mlflow', 'optuna'})\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_plugin_registers_the_mlflow_link() -> None:
    from rlops_links import MlflowRunLink, RlopsPlugin

    assert [type(link) for link in RlopsPlugin.global_operator_extra_links] == [MlflowRunLink]
    assert MlflowRunLink.name == "MLflow run"
