"""The champion monitor's Params are `MonitorSettings`: a default changed there reaches the
trigger form and what the tasks do, and the tasks refuse a conf in the pipeline's words."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, ParamValidationError
from airflow.sdk.execution_time.context import set_current_context
from pydantic import create_model

from rlops_airflow import monitor_settings
from rlops_airflow.canary import CanaryRule
from rlops_airflow.drift import DriftRule
from rlops_airflow.monitor_settings import CANARY, DRIFT, EVIDENCE, MODEL, MonitorSettings
from rlops_airflow.monitoring import Evidence
from rlops_airflow.monitoring_tasks import evaluate_champion, models_to_monitor
from rlops_registry.registry import ModelRegistry
from tests.conftest import REPO, validate_trigger
from tests.serving.policies import register_policy

DAG_ID = "rlops_champion_monitor"
HOUR = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def _monitor_dag() -> Any:
    """The monitor DAG as the dag-processor parses it, now."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / f"{DAG_ID}.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


@pytest.fixture(scope="module")
def dag() -> Any:
    return _monitor_dag()


def _with_defaults(**defaults: Any) -> type[MonitorSettings]:
    """`MonitorSettings` with other defaults, every field otherwise as it is."""
    fields = {}
    for name, default in defaults.items():
        field = copy.copy(MonitorSettings.model_fields[name])
        field.default = default
        fields[name] = (field.annotation, field)
    return create_model("ChangedMonitorSettings", __base__=MonitorSettings, **fields)


def _refusal(params: dict[str, Any]) -> str:
    """Why the monitor's first task fails a run handed `params` (Airflow's merge of the DAG's
    defaults and the run's conf)."""
    with pytest.raises(AirflowFailException) as refused:
        models_to_monitor.function(params=params)
    return str(refused.value)


def test_every_param_is_a_settings_field_with_its_default_title_and_section(dag) -> None:
    validate_trigger(dag, {})
    defaults = MonitorSettings().model_dump()
    assert list(dag.params) == list(defaults)
    for name, default in defaults.items():
        param = dag.params.get_param(name)
        assert param.value == default, name
        assert param.schema["title"] == MonitorSettings.model_fields[name].title, name
        assert param.schema["section"] in {MODEL, EVIDENCE, DRIFT, CANARY}, name
        assert param.description == MonitorSettings.model_fields[name].description, name
    assert dag.params.get_param("episodes").schema | {"title": ""} == {
        "type": "integer",
        "minimum": 2,
        "maximum": 2000,
        "title": "",
        "section": EVIDENCE,
    }


def test_what_the_library_does_by_default_is_what_an_untouched_form_runs(dag) -> None:
    evidence, rule, canary = Evidence(), DriftRule(), CanaryRule()
    assert (evidence.episodes, evidence.reference_episodes) == (
        dag.params["episodes"],
        dag.params["reference_episodes"],
    )
    assert evidence.min_served_episodes == canary.min_episodes == dag.params["min_served_episodes"]
    window = timedelta(minutes=dag.params["served_window_minutes"])
    assert evidence.window == canary.window == window
    assert (rule.tolerance, rule.breaches_to_rollback) == (
        dag.params["drift_tolerance"],
        dag.params["breaches_to_rollback"],
    )
    assert rule.confidence == canary.confidence == dag.params["confidence"]
    assert (canary.noninferiority_margin, canary.promote, canary.confirm_with_simulator) == (
        dag.params["noninferiority_margin"],
        dag.params["promote_on_canary"],
        dag.params["confirm_with_simulator"],
    )
    assert canary.episodes == dag.params["episodes"]


def test_a_default_changed_in_the_model_reaches_the_form_and_the_task(
    monkeypatch: pytest.MonkeyPatch, mlflow_store: str
) -> None:
    monkeypatch.setattr(
        monitor_settings, "MonitorSettings", _with_defaults(episodes=3, reference_episodes=4)
    )
    dag = _monitor_dag()
    assert (dag.params["episodes"], dag.params["reference_episodes"]) == (3, 4)
    model = "rlops-monitor-defaults"
    ModelRegistry(model).crown(register_policy(model, reward=-1000.0))
    params = dict(dag.params.validate())  # what the tasks of a run without conf are handed
    episodes = []
    for hour in (0, 1):  # the version's reference, then a check compared with it
        moment = HOUR + timedelta(hours=hour)
        run = SimpleNamespace(dag_id=DAG_ID, run_id=f"scheduled__{hour}", logical_date=moment)
        with set_current_context({}):  # the task names its instance after the model
            check = evaluate_champion.function(model, params=params, dag_run=run)
        episodes.append(check["episodes"])
    assert episodes == [4, 3]


@pytest.mark.parametrize(
    ("conf", "bounds"),
    [
        ({"episodes": 1}, "episodes: Input should be greater than or equal to 2 (given 1)"),
        (
            {"confidence": 1.0},
            "confidence: Input should be less than or equal to 0.999 (given 1.0)",
        ),
        (
            {"drift_tolerance": 1.5},
            "drift_tolerance: Input should be less than or equal to 1 (given 1.5)",
        ),
    ],
)
def test_an_out_of_range_value_is_refused_naming_the_field_and_its_bound(dag, conf, bounds) -> None:
    (name,) = conf
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}:"):
        validate_trigger(dag, conf)  # at trigger time (the form, the REST API)
    assert _refusal({**dag.params.validate(), **conf}) == f"invalid conf: {bounds}"  # the task


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"episdoes": 5}, "episdoes: unknown parameter; did you mean episodes?"),
        (
            {"zzz": 1, "Episodes": 2},
            "zzz: unknown parameter; known: registered_model_name, episodes, "
            "reference_episodes, min_served_episodes, served_window_minutes, "
            "confirm_with_simulator, drift_tolerance, breaches_to_rollback, confidence, "
            "noninferiority_margin, promote_on_canary; "
            "Episodes: unknown parameter; did you mean episodes?",
        ),
    ],
)
def test_a_conf_key_no_param_declares_is_refused_by_name(dag, conf, message) -> None:
    """Airflow accepts such a key at trigger time and ignores it: a typo would run the check
    with the default. Refused as the pipeline's `validate_conf` refuses one."""
    validate_trigger(dag, conf)
    assert _refusal({**dag.params.validate(), **conf}) == f"invalid conf: {message}"


def test_a_valid_conf_is_taken() -> None:
    conf = {"episodes": 5, "drift_tolerance": 0.1, "registered_model_name": "mine"}
    assert models_to_monitor.function(params={**MonitorSettings().model_dump(), **conf}) == ["mine"]
