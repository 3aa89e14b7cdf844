"""The champion monitor DAG: it loads, is wired and scheduled as designed, refuses bad params,
alerts once per failed run, and (run by Airflow itself) rolls a dropped champion back when told to
trust served evidence, and moves no alias on forged served evidence by default."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import yaml
from airflow.sdk.definitions.timetables.assets import AssetOrTimeSchedule
from mlflow import MlflowClient

from rl_core.common.artifact_names import CONFIG_ARTIFACT
from rl_core.common.config import build_config
from rlops_airflow import assets
from rlops_airflow.monitoring import REFERENCE_TAG
from rlops_airflow.notify import EmailNotifier, WebhookNotifier, record_failure
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, PREVIOUS_CHAMPION, ModelRegistry
from tests.conftest import REPO, airflow_dags_test, validate_trigger
from tests.monitoring.served import honest_returns, report_episodes, report_returns
from tests.notify.receivers import alert_env, smtp_receiver, webhook_receiver  # noqa: F401
from tests.serving.policies import register_broken_version, register_policy

DAG_ID = "rlops_champion_monitor"
EVALUATE, GUARD, CANARY, ANNOUNCE = PER_MODEL = (
    "monitor_model.evaluate_champion",
    "monitor_model.drift_guard",
    "monitor_model.judge_canary",
    "monitor_model.announce_degraded",
)


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_wiring_schedule_and_failure_policy(dag) -> None:
    assert set(dag.task_ids) == {"models_to_monitor", *PER_MODEL}
    evaluate, guard, canary, announce = (dag.get_task(task_id) for task_id in PER_MODEL)
    assert dag.get_task("models_to_monitor").downstream_task_ids == {
        evaluate.task_id,
        canary.task_id,
        announce.task_id,  # the model it names
    }
    assert evaluate.downstream_task_ids == {guard.task_id}
    assert canary.downstream_task_ids == set()
    # the guard's teardown: runs after the guard failed (its events die with it), and the run's
    # state stays the guard's; it announces the degraded champion, the pipeline consumes it
    assert guard.downstream_task_ids == {announce.task_id}
    assert announce.is_teardown and announce.outlets == [assets.CHAMPION_DEGRADED]
    for task_id in PER_MODEL:  # one instance per model, named after it
        assert dag.get_task(task_id).map_index_template == "{{ rlops_model_name }}", task_id
    assert isinstance(dag.timetable, AssetOrTimeSchedule)  # hourly, or on a new champion
    assert dag.timetable.timetable.expression == "30 * * * *"
    assert str(dag.timetable.timetable.timezone) == "UTC"
    assert dag.timetable.asset_condition == assets.CHAMPION
    assert (dag.catchup, dag.max_active_runs) == (False, 1)
    assert [type(n) for n in dag.on_failure_callback] == [WebhookNotifier, EmailNotifier]
    for task in dag.tasks:
        assert task.on_failure_callback == [record_failure], task.task_id
        assert task.retries >= 2, task.task_id
        assert task.retry_delay >= timedelta(seconds=30), task.task_id
    assert "-drift_tolerance * |reference mean|" in dag.doc_md
    assert "**Risk of turning `confirm_with_simulator` off**" in dag.doc_md


def test_default_params_are_valid_and_documented(dag) -> None:
    validate_trigger(dag, {})
    assert dag.params["drift_tolerance"] == 0.05
    assert dag.params["episodes"] == 200
    assert dag.params["breaches_to_rollback"] == 2
    assert dag.params["promote_on_canary"] is False
    assert dag.params["confirm_with_simulator"] is True  # served evidence never acts alone
    for name in dag.params:
        param = dag.params.get_param(name)
        assert param.schema.get("title"), name
        assert param.description, name


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"episodes": 1}, "episodes"),
        ({"breaches_to_rollback": 0}, "breaches_to_rollback"),
        ({"confidence": 1.0}, "confidence"),
        ({"promote_on_canary": "yes"}, "promote_on_canary"),
        ({"confirm_with_simulator": "no"}, "confirm_with_simulator"),
        ({"min_served_episodes": 1}, "min_served_episodes"),
        ({"episodes": "many"}, "episodes"),
        ({"drift_tolerance": -0.01}, "drift_tolerance"),
        ({"drift_tolerance": 1.5}, "drift_tolerance"),
        ({"drift_tolerance": "5%"}, "drift_tolerance"),
        ({"registered_model_name": "bad name!"}, "registered_model_name"),
    ],
)
def test_bad_params_are_refused_naming_the_field(dag, conf, field) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}:"):
        validate_trigger(dag, conf)


def _newest_run(airflow_env: dict[str, str], task_id: str) -> list[tuple[str, int, str]]:
    """State, try number and name (rendered map index) of each instance of the task in the
    newest monitor run, from Airflow's own DB."""
    db = airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        return connection.execute(
            """SELECT ti.state, ti.try_number, ti.rendered_map_index FROM task_instance ti
               WHERE ti.dag_id = ? AND ti.task_id = ? AND ti.run_id = (
                   SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)
               ORDER BY ti.map_index""",
            (DAG_ID, task_id, DAG_ID),
        ).fetchall()


def _last_try(airflow_env: dict[str, str], task_id: str) -> tuple[str, int]:
    """State and try number of the task's one instance in the newest monitor run."""
    ((state, try_number, _),) = _newest_run(airflow_env, task_id)
    return state, try_number


def _asset_events(airflow_env: dict[str, str], uri: str) -> list[dict]:
    """Every event of the asset in Airflow's own DB, oldest first."""
    db = airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            """SELECT e.* FROM asset_event e JOIN asset a ON a.id = e.asset_id
               WHERE a.uri = ? ORDER BY e.id""",
            (uri,),
        ).fetchall()
    return [{**row, "extra": json.loads(row["extra"])} for row in rows]


def _drift_triggered_settings(event: dict, version: str) -> dict:
    """What the pipeline's first task makes of a run `event` started (Airflow gives such a run
    no conf, only its triggering events), once the version's run has a logged recipe."""
    from airflow.dag_processing.dagbag import DagBag

    recipe = build_config({"env_id": "Pendulum-v1", "seed": 5, "total_timesteps": 2_000})
    run_id = ModelRegistry(event["extra"]["model_name"]).version(version).run_id
    MlflowClient().log_text(run_id, yaml.safe_dump(recipe.resolved()), CONFIG_ARTIFACT)
    pipeline = DagBag(dag_folder=str(REPO / "dags")).dags["rlops_sac_pipeline"]
    triggered = SimpleNamespace(extra=event["extra"], timestamp=event["timestamp"])
    run = SimpleNamespace(dag_id=pipeline.dag_id, run_id="asset_triggered__1", run_after=_hour(3))
    return pipeline.get_task("validate_conf").python_callable(
        params=dict(pipeline.params.validate()),
        dag_run=run,
        triggering_asset_events={assets.CHAMPION_DEGRADED: [triggered]},
    )


def _hour(hour: int) -> datetime:
    return datetime(2026, 11, 22, 14, 0, tzinfo=UTC) + timedelta(hours=hour)


@pytest.mark.slow
def test_airflow_rolls_a_degraded_champion_back_after_two_breaches_and_alerts(
    airflow_db, mlflow_store, webhook, smtp
):
    """With `confirm_with_simulator` off (served evidence acts alone): served traffic far
    below what the champion does in the simulator, two hours in a row."""
    model = "rlops-monitor-e2e"
    registry = ModelRegistry(model)
    good = register_policy(model, reward=-5000.0, seed=1)
    registry.crown(good)
    degraded = register_policy(model, reward=-100.0, seed=2)
    registry.crown(degraded)
    env = {**os.environ, **airflow_db, **alert_env(webhook, smtp)}
    conf = {
        "registered_model_name": model,
        "episodes": 3,
        "reference_episodes": 10,
        "min_served_episodes": 50,
        "confirm_with_simulator": False,
    }

    def check(hour: int, served_mean: float | None) -> subprocess.CompletedProcess:
        """Clients report `degraded`'s episodes half an hour before the hourly check: what
        it does in the simulator (None), or around `served_mean`."""
        received = _hour(hour) - timedelta(minutes=30)
        if served_mean is None:
            report_returns(model, degraded, received, honest_returns(model, degraded, 80))
        else:
            report_episodes(model, degraded, received, served_mean)
        return airflow_dags_test(DAG_ID, env, conf, _hour(hour).isoformat())

    for hour, served_mean in enumerate([None, -3000.0]):  # an honest hour, then one breach
        done = check(hour, served_mean)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert str(registry.alias(CHAMPION).version) == degraded
    assert len(registry.version(degraded).tags["rlops.drift.breaches"].split()) == 1
    assert webhook.received == []

    failed = check(2, -3000.0)  # the second breach in a row
    assert failed.returncode == 1, failed.stdout[-4000:] + failed.stderr[-4000:]
    # Failed on its first try, with retries configured: a retry would have judged the
    # rolled-back champion and turned the run green.
    assert _last_try(airflow_db, GUARD) == ("failed", 1)
    assert _last_try(airflow_db, EVALUATE) == ("success", 1)
    assert str(registry.alias(CHAMPION).version) == good
    assert registry.version(degraded).tags["rlops.drift.action"] == f"rolled back to v{good}"
    (alert,) = (post["body"] for post in webhook.received)
    assert (alert["task"], alert["try_number"]) == (f"{GUARD}[{model}]", 1)
    drift = f"drift of {model} v{degraded}: 2 consecutive breaches, the last: online mean return"
    assert alert["reason"].startswith(drift)
    assert len(smtp.handler.received) == 1
    # the failed guard's teardown announced it, and a run it starts retrains that recipe
    (event,) = _asset_events(airflow_db, assets.CHAMPION_DEGRADED.uri)
    assert (event["source_task_id"], event["source_map_index"]) == (ANNOUNCE, 0)
    assert event["extra"] == {
        "model_name": model,
        "rolled_back_version": degraded,
        "restored_version": good,
        "reason": alert["reason"].removeprefix(f"drift of {model} v{degraded}: ").split("; ")[0],
    }
    assert _last_try(airflow_db, ANNOUNCE) == ("success", 1)
    settings = _drift_triggered_settings(event, degraded)
    assert (settings["registered_model_name"], settings["seed"]) == (model, 5)
    assert settings["drift_retrain_of"] == f"{model}@v{degraded}"

    restored = airflow_dags_test(DAG_ID, env, conf, _hour(3).isoformat())
    assert restored.returncode == 0, restored.stdout[-4000:] + restored.stderr[-4000:]
    checked = registry.version(good).tags  # no traffic for it yet: its first simulator check
    assert checked[REFERENCE_TAG] == checked["rlops.online_run_id"]
    assert len(webhook.received) == 1

    typo = airflow_dags_test(DAG_ID, env, {"registered_model_name": model, "episdoes": 3})
    assert typo.returncode == 1, typo.stdout[-4000:] + typo.stderr[-4000:]
    assert _last_try(airflow_db, "models_to_monitor") == ("failed", 1)  # no retries
    assert _last_try(airflow_db, EVALUATE)[0] == "upstream_failed"
    assert (
        "invalid conf: episdoes: unknown parameter; did you mean episodes?"
        in (webhook.received[-1]["body"]["reason"])
    )
    assert registry.version(good).tags["rlops.online_run_id"] == checked["rlops.online_run_id"]
    assert str(registry.alias(CHAMPION).version) == good


@pytest.mark.slow
def test_by_default_every_rlops_champion_is_checked_by_tasks_of_its_own(
    airflow_db, mlflow_store, tmp_path
):
    envs = {"rlops-sac-mountaincarcontinuous": "MountainCarContinuous-v0"}
    envs["rlops-sac-pendulum"] = "Pendulum-v1"
    for model, env_id in envs.items():
        ModelRegistry(model).crown(register_policy(model, reward=-1000.0, env_id=env_id))
    ModelRegistry("other-tooling").crown(register_broken_version("other-tooling", tmp_path))
    conf = {"episodes": 3, "reference_episodes": 3}
    done = airflow_dags_test(DAG_ID, {**os.environ, **airflow_db}, conf, _hour(0).isoformat())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for task_id in (EVALUATE, GUARD, CANARY):  # the canary: skipped, no challengers
        names = [name for _, _, name in _newest_run(airflow_db, task_id)]
        assert names == list(envs), task_id
    checks = {}
    for model in envs:
        check = ModelRegistry(model).alias(CHAMPION).tags["rlops.online_run_id"]
        assert MlflowClient().get_run(check).data.tags["rlops.model_name"] == model
        checks[model] = check
    assert len(set(checks.values())) == 2


@pytest.mark.slow
def test_forged_served_evidence_moves_no_alias_through_airflow(airflow_db, mlflow_store):
    """The two attacks on served evidence, run by Airflow with the monitor's defaults
    (`confirm_with_simulator` on), each on a model of its own, checked by the same runs:
    rollback poisoning (150 reports of -10 in a champion's first served hour, then an honest
    hour, one breach enough to roll back) and canary forging (151 reports of -100 for a
    challenger worse in the simulator than the champion, with `promote_on_canary`)."""
    poisoned, forged = "rlops-attack-rollback", "rlops-attack-canary"
    target = ModelRegistry(poisoned)
    target.crown(register_policy(poisoned, reward=-1400.0, seed=1))
    attacked = register_policy(poisoned, reward=-1400.0, seed=2)
    target.crown(attacked)
    canary = ModelRegistry(forged)
    champion = register_policy(forged, reward=-1400.0, seed=2)
    canary.crown(champion)
    challenger = register_policy(forged, reward=-1400.0, seed=0)  # worse in the simulator
    canary.set_alias(CHALLENGER, challenger)
    canary.set_tags(challenger, {tags.REWARD_GATE: "passed", tags.SPEEDUP_GATE: "passed"})
    aliases = {
        (poisoned, CHAMPION): attacked,
        (poisoned, PREVIOUS_CHAMPION): str(target.alias(PREVIOUS_CHAMPION).version),
        (forged, CHAMPION): champion,
        (forged, CHALLENGER): challenger,
    }
    env = {**os.environ, **airflow_db}
    conf = {
        "episodes": 20,
        "reference_episodes": 10,
        "min_served_episodes": 100,
        "breaches_to_rollback": 1,
        "promote_on_canary": True,
    }

    def unmoved() -> None:
        for (name, alias), version in aliases.items():
            assert str(ModelRegistry(name).alias(alias).version) == version, (name, alias)

    received = _hour(0) - timedelta(minutes=30)
    report_returns(poisoned, attacked, received, [-10.0] * 150)
    report_returns(forged, champion, received, honest_returns(forged, champion, 120))
    report_returns(forged, challenger, received, [-100.0] * 151)
    done = airflow_dags_test(DAG_ID, env, conf, _hour(0).isoformat())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    unmoved()
    verdict = canary.version(challenger).tags[tags.CANARY_VERDICT]
    assert f"served: challenger v{challenger} -100.00 over 151 served episodes" in verdict
    assert "the simulator disagrees on 20 fresh paired episodes" in verdict
    assert verdict.endswith("; not promoted: the simulator disagrees")

    honest = honest_returns(poisoned, attacked, 120)
    report_returns(poisoned, attacked, _hour(1) - timedelta(minutes=30), honest)
    done = airflow_dags_test(DAG_ID, env, conf, _hour(1).isoformat())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    unmoved()
    checked = target.version(attacked).tags
    assert checked["rlops.drift.breaches"] == ""
    reference = MlflowClient().get_run(checked[REFERENCE_TAG]).data.tags
    assert (reference["rlops.monitor.purpose"], reference["rlops.drift"]) == (
        "reference",
        "reference",
    )
    assert "rlops.drift.reference.served" not in checked
    assert [state for state, _, _ in _newest_run(airflow_db, GUARD)] == ["success", "success"]
