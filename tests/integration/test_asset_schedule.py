"""Drift retraining through Airflow Assets on the stack's real scheduler, and the asset graph in
the real UI.

A `champion-degraded` event, posted with the extra the monitor's rollback writes
(`Degradation.as_extra`) through `POST /api/v2/assets/events`, makes the *scheduler* start the
pipeline (run type `asset_triggered`, no conf); its first task resolves the rolled-back version's
recipe from the config its MLflow run logged. The run is stopped there: training it proves
nothing more here. A second event within the cooldown starts a run that refuses at once. The
UI's asset page then draws the loop pipeline -> rlops://champion -> monitor ->
rlops://champion-degraded -> pipeline; its screenshot is asset-graph.png in the test artifacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from devstack import Stack
from rl_core.common.artifact_names import CONFIG_ARTIFACT
from rl_core.common.config import build_config
from rlops_airflow.assets import CHAMPION, CHAMPION_DEGRADED
from rlops_airflow.retrain import Degradation, RetrainMark
from rlops_airflow.settings import ResolvedSettings
from rlops_registry import tags
from tests.browser import save_screenshot
from tests.integration import test_trigger_ui
from tests.integration.conftest import DAG_ID, AirflowApi, poll

pytestmark = pytest.mark.integration

browser = test_trigger_ui.browser  # the same logged-in Chromium fixture
MONITOR_DAG_ID = "rlops_champion_monitor"
MODEL = "rlops-asset-drift"
# The rolled-back version's training recipe, as rl_core's training logs it (config.yaml).
RECIPE = {
    "env_id": "Pendulum-v1",
    "total_timesteps": 2_000,
    "seed": 5,
    "eval_seeds": list(range(1500, 1504)),
    "hidden_sizes": [48, 48],
}
REASON = "2 consecutive breaches (asset schedule test)"
# Airflow stores an asset URI normalized: a bare authority gets the root path.
STORED_URI = {
    CHAMPION.name: "rlops://champion/",
    CHAMPION_DEGRADED.name: "rlops://champion-degraded/",
}


@contextmanager
def _mlflow_as_airflow(stack: Stack) -> Iterator[MlflowClient]:
    """A client of the stack's MLflow server, logged in as Airflow's tasks are."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in stack.mlflow_client_env().items():
            env.setenv(name, value)
        yield MlflowClient()


def _rolled_back_version(stack: Stack) -> str:
    """A registered version of MODEL whose run logged RECIPE's resolved config; its number."""
    with _mlflow_as_airflow(stack) as client:
        experiment = client.create_experiment("asset-schedule-tests")
        run_id = client.create_run(experiment).info.run_id
        resolved = build_config(RECIPE).resolved()
        client.log_text(run_id, yaml.safe_dump(resolved, sort_keys=False), CONFIG_ARTIFACT)
        client.set_terminated(run_id)
        client.create_registered_model(MODEL)
        return str(client.create_model_version(MODEL, f"runs:/{run_id}", run_id).version)


def _asset_ids(api: AirflowApi) -> dict[str, int]:
    """The stack's asset ids by asset name, checking each is stored under our URI."""
    stored = {asset["name"]: asset for asset in api.get("/api/v2/assets")["assets"]}
    assert {name: stored[name]["uri"] for name in STORED_URI} == STORED_URI
    return {name: stored[name]["id"] for name in STORED_URI}


def _asset_runs(api: AirflowApi) -> list[dict[str, Any]]:
    path = f"{api.dag_path}/dagRuns"
    return api.get(path, run_type="asset_triggered", order_by="run_after")["dag_runs"]


def _new_run(api: AirflowApi, known: set[str]) -> str:
    """The id of the first asset-triggered pipeline run not in `known` (waits for it)."""
    return poll(
        lambda: next(
            (r["dag_run_id"] for r in _asset_runs(api) if r["dag_run_id"] not in known), None
        ),
        "asset-triggered pipeline run",
        timeout=180,
    )


@dataclass(frozen=True)
class DriftRuns:
    """The pipeline runs two `champion-degraded` events of one version started."""

    version: str
    retrain: dict[str, Any]  # the first event's run, stopped once validate_conf had resolved
    refused: dict[str, Any]  # the second event's run, within the cooldown


def _ended(api: AirflowApi, run_id: str, task_id: str) -> str | None:
    """A task's final state in a run, or None while it has not ended."""
    state = api.tasks(run_id).get((task_id, -1))
    return state if state in ("success", "failed", "skipped", "upstream_failed") else None


@pytest.fixture(scope="module")
def drift_runs(stack: Stack, pipeline_api: AirflowApi) -> DriftRuns:
    """Two `champion-degraded` events of one rolled-back version, as the monitor posts them,
    and the pipeline runs the scheduler started for them."""
    version = _rolled_back_version(stack)
    degraded = _asset_ids(pipeline_api)[CHAMPION_DEGRADED.name]
    event = {"asset_id": degraded, "extra": Degradation(MODEL, version, None, REASON).as_extra()}
    known = {run["dag_run_id"] for run in _asset_runs(pipeline_api)}

    pipeline_api.post("/api/v2/assets/events", event)
    retrain_id = _new_run(pipeline_api, known)
    # Held back by max_active_runs=1: the scheduler starts its run when the first one ends.
    pipeline_api.post("/api/v2/assets/events", event)
    poll(lambda: _ended(pipeline_api, retrain_id, "validate_conf"), "validate_conf's end")
    pipeline_api.patch(pipeline_api.run_path(retrain_id), {"state": "failed"})  # no training
    refused_id = _new_run(pipeline_api, known | {retrain_id})
    refused = pipeline_api.wait_for_run(refused_id, timeout=180)
    return DriftRuns(version, pipeline_api.get(pipeline_api.run_path(retrain_id)), refused)


def test_a_degraded_event_makes_the_scheduler_retrain_the_rolled_back_recipe(
    pipeline_api: AirflowApi, drift_runs: DriftRuns
) -> None:
    run = drift_runs.retrain
    run_id = run["dag_run_id"]
    assert (run["run_type"], run["triggered_by"], run["conf"]) == ("asset_triggered", "asset", {})
    (event,) = pipeline_api.get(f"{pipeline_api.run_path(run_id)}/upstreamAssetEvents")[
        "asset_events"
    ]
    assert event["uri"] == STORED_URI[CHAMPION_DEGRADED.name]
    assert Degradation.from_extra(event["extra"]).lineage == f"{MODEL}@v{drift_runs.version}"
    assert pipeline_api.tasks(run_id)[("validate_conf", -1)] == "success"

    # What every later task of the run takes: the rolled-back version's recipe, saying why.
    xcom = f"{pipeline_api.run_path(run_id)}/taskInstances/validate_conf/xcomEntries/return_value"
    conf = pipeline_api.get(xcom)["value"]
    assert conf["drift_retrain_of"] == f"{MODEL}@v{drift_runs.version}"
    assert conf["registered_model_name"] == MODEL
    assert (conf["total_timesteps"], conf["seed"]) == (2_000, 5)
    assert (conf["eval_seed_start"], conf["eval_episodes"]) == (1500, 4)
    assert conf["sac_overrides"] == {"hidden_sizes": [48, 48]}
    trains = ResolvedSettings(**conf).sac_config()  # the recipe validate_conf resolved, as is
    assert trains.config_hash() == build_config(RECIPE).config_hash()
    log = pipeline_api.task_log(run_id, "validate_conf")
    assert f"started by the rollback of {MODEL}@v{drift_runs.version}: {REASON}" in log


def test_a_second_event_within_the_cooldown_starts_a_run_that_refuses(
    stack: Stack, pipeline_api: AirflowApi, drift_runs: DriftRuns
) -> None:
    run = drift_runs.refused
    run_id = run["dag_run_id"]
    assert (run["run_type"], run["state"]) == ("asset_triggered", "success")
    assert set(pipeline_api.tasks(run_id).values()) == {"skipped"}  # nothing trained
    log = pipeline_api.task_log(run_id, "validate_conf")
    first = f"{DAG_ID}/{drift_runs.retrain['dag_run_id']}"
    assert f"drift-triggered retrain skipped: {first} retrained this model" in log
    assert "within the cooldown of 6 h (drift_retrain_cooldown_hours)" in log
    with _mlflow_as_airflow(stack) as client:
        mark = client.get_registered_model(MODEL).tags[tags.DRIFT_RETRAIN_LAST]
    assert RetrainMark.from_tag(mark).run_key == first  # the refused run claimed nothing


def test_the_asset_graph_shows_the_retrain_loop(
    browser: WebDriver, stack: Stack, pipeline_api: AirflowApi, drift_runs: DriftRuns
) -> None:
    """The asset page of `champion-degraded`: its producer and consumer, and the loop through
    `champion`; beside it, the two events and the runs they started (drift_runs)."""
    with AirflowApi(stack, MONITOR_DAG_ID) as monitor:
        monitor.wait_for_dag()  # the producer of champion-degraded, the consumer of champion
    ids = _asset_ids(pipeline_api)
    champion, degraded = (f"asset:{ids[a.name]}" for a in (CHAMPION, CHAMPION_DEGRADED))
    pipeline, monitor_dag = f"dag:{DAG_ID}", f"dag:{MONITOR_DAG_ID}"
    loop = [pipeline, champion, monitor_dag, degraded, pipeline]
    wanted = {f"{source}-{target}" for source, target in pairwise(loop)}  # React Flow's ids

    browser.set_window_size(1900, 900)  # the whole chain, wide enough to read
    browser.get(f"{stack.airflow_url}/assets/{ids[CHAMPION_DEGRADED.name]}")

    def drawn(driver: WebDriver) -> set[str]:
        edges = driver.find_elements(By.CSS_SELECTOR, ".react-flow__edge")
        return {edge.get_attribute("data-id") or "" for edge in edges}

    wait = WebDriverWait(
        browser, test_trigger_ui.UI_WAIT, ignored_exceptions=[StaleElementReferenceException]
    )
    wait.until(lambda d: wanted <= drawn(d), f"the asset graph does not draw all of {wanted}")
    nodes = {
        node.get_attribute("data-id"): node.text
        for node in browser.find_elements(By.CSS_SELECTOR, ".react-flow__node")
    }
    assert {key: nodes.get(key) for key in (champion, degraded, pipeline, monitor_dag)} == {
        champion: CHAMPION.name,
        degraded: CHAMPION_DEGRADED.name,
        pipeline: DAG_ID,
        monitor_dag: MONITOR_DAG_ID,
    }
    # The events beside the graph, each with the pipeline run it started.
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").text.count("Triggered Dag Run") == 2)
    save_screenshot(browser, "asset-graph.png")
