"""The MLflow run of each candidate of an Airflow DAG run, found by a deterministic key.

`train` creates one run per candidate seed (one run per DAG run with the default sweep of one
seed), tagged with the Airflow dag_id, run id, a link to the Airflow UI and the key
`rlops.candidate_key = <dag_id>/<run_id>/seed=<seed>`. Every later task, and every retry (whose
XComs Airflow 3 clears), finds it again by that key, so a retry never makes a second run. The
selected candidate's run then collects the gate, latency and registry results. Artifacts travel
through the run's artifact store (S3 in production), never through a worker's disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from rl_core.common.tracking import get_or_create_experiment
from rlops_airflow.settings import artifact_location, experiment_name
from rlops_registry import tags as tag_names

MLFLOW_UI_ENV = "RLOPS_MLFLOW_UI_URL"
"""Base URL of an MLflow UI for links; defaults to the tracking URI when that is http(s)."""


@dataclass(frozen=True)
class AirflowRun:
    """Identity of the Airflow DAG run a task belongs to."""

    dag_id: str
    run_id: str
    ui_url: str | None = None

    @property
    def key(self) -> str:
        return f"{self.dag_id}/{self.run_id}"

    def candidate_key(self, seed: int) -> str:
        return f"{self.key}/seed={seed}"

    def trial_key(self, map_index: int) -> str:
        """Key of a tuning DAG run's trial task `map_index` (its MLflow run, its Optuna trial)."""
        return f"{self.key}/trial={map_index}"

    def tags(self) -> dict[str, str]:
        tags = {
            tag_names.AIRFLOW_DAG_ID: self.dag_id,
            tag_names.AIRFLOW_RUN_ID: self.run_id,
            tag_names.RUN_KEY: self.key,
        }
        if self.ui_url:
            tags[tag_names.AIRFLOW_UI_URL] = self.ui_url
        return tags


def _experiment_id(client: MlflowClient) -> str:
    return get_or_create_experiment(client, experiment_name(), artifact_location())


def find_keyed_run(key: str, client: MlflowClient) -> str | None:
    """The MLflow run id tagged with candidate key `key`, if a task already created it."""
    if "'" in key:
        raise ValueError(f"Airflow run key {key!r} may not contain a single quote")
    runs = client.search_runs(
        [_experiment_id(client)],
        filter_string=f"tags.`{tag_names.CANDIDATE_KEY}` = '{key}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def get_or_create_keyed_run(airflow: AirflowRun, key: str, run_name: str) -> str:
    """The run id of the run keyed `key` in this DAG run, creating the run on first call."""
    client = MlflowClient()
    existing = find_keyed_run(key, client)
    if existing is not None:
        return existing
    tags = {**airflow.tags(), tag_names.CANDIDATE_KEY: key}
    return client.create_run(_experiment_id(client), run_name=run_name, tags=tags).info.run_id


def get_or_create_candidate_run(airflow: AirflowRun, seed: int, run_name: str) -> str:
    """The run id of candidate `seed` of this DAG run, creating the run on first call."""
    return get_or_create_keyed_run(airflow, airflow.candidate_key(seed), run_name)


def ui_base_url() -> str | None:
    base = os.environ.get(MLFLOW_UI_ENV) or mlflow.get_tracking_uri()
    return base.rstrip("/") if base.startswith(("http://", "https://")) else None


def run_url(run_id: str) -> str | None:
    """Link to the run in the MLflow UI (None when no UI address is known)."""
    base = ui_base_url()
    if base is None:
        return None
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def download(run_id: str, artifact_path: str, dst: Path) -> Path:
    """Fetch one artifact (file or folder) of the run into `dst`."""
    dst.mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dst)
    )
    return Path(local)


def has_artifact(run_id: str, folder: str, name: str) -> bool:
    files = MlflowClient().list_artifacts(run_id, folder)
    return any(Path(f.path).name == name for f in files)
