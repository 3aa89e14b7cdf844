"""The one MLflow run that tracks a whole Airflow DAG run, found by a deterministic key.

The first task creates it, tagged with the Airflow dag_id, run id and a link to the Airflow UI;
every later task (and every retry, whose XComs Airflow 3 clears) finds it again by the tag
`airflow.run_key`, so a DAG run never has two MLflow runs. Artifacts travel through the run's
artifact store (S3 in production), never through a worker's disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from rlops_airflow.registry import RUN_KEY_TAG
from rlops_airflow.settings import artifact_location, experiment_name

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

    def tags(self) -> dict[str, str]:
        tags = {"airflow.dag_id": self.dag_id, "airflow.run_id": self.run_id, RUN_KEY_TAG: self.key}
        if self.ui_url:
            tags["airflow.ui_url"] = self.ui_url
        return tags


def _experiment_id(client: MlflowClient) -> str:
    name = experiment_name()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location())


def find_pipeline_run(airflow: AirflowRun, client: MlflowClient | None = None) -> str | None:
    """The MLflow run id of this DAG run, if a task already created it."""
    client = client or MlflowClient()
    if "'" in airflow.key:
        raise ValueError(f"Airflow run key {airflow.key!r} may not contain a single quote")
    runs = client.search_runs(
        [_experiment_id(client)],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{airflow.key}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def get_or_create_pipeline_run(airflow: AirflowRun, run_name: str) -> str:
    """The run id for this DAG run, creating the run on first call."""
    client = MlflowClient()
    existing = find_pipeline_run(airflow, client)
    if existing is not None:
        return existing
    run = client.create_run(_experiment_id(client), run_name=run_name, tags=airflow.tags())
    return run.info.run_id


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
