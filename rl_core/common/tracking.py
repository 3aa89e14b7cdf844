"""Experiment tracking that costs nothing unless MLflow is configured.

`make_tracker()` returns a `NullTracker` when `MLFLOW_TRACKING_URI` is unset: every call is a
no-op and mlflow is never imported, so rl_core runs (and tests) without it. Otherwise an
`MlflowTracker` logs to one MLflow run through `MlflowClient` (no global active-run state),
batching metric points so a long run does not make one HTTP call per episode.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from rl_core.common.config import SACConfig

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
_METRIC_BATCH = 500  # MLflow's log_batch accepts up to 1000 metrics per call
WAIT_SECONDS_ENV = "RLOPS_MLFLOW_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS = 120.0
"""How long a run waits for an unreachable tracking server before it fails, naming it."""
MLFLOW_REQUEST_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
"""MLflow's own per-request limits, unless set already. Its defaults (120 s timeout, 7
retries, backoff factor 2) let one call to a paused server hang for many minutes unseen;
these bound a call to about 2.5 minutes, and urllib3 logs each retry with the endpoint."""

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
"""Without this tag MLflow 3's UI guesses the experiment's kind and may open its runs under
"GenAI > Evaluations"; with it, the model-training view."""

log = logging.getLogger(__name__)


class TrackingServerUnreachable(RuntimeError):
    """The MLflow tracking server did not answer within the wait budget."""


def bound_mlflow_requests() -> None:
    """Apply `MLFLOW_REQUEST_BOUNDS` where the environment does not set them."""
    for name, value in MLFLOW_REQUEST_BOUNDS.items():
        os.environ.setdefault(name, value)


def wait_for_tracking_server(uri: str | None = None) -> None:
    """Return once an http(s) tracking server answers `/health`; else fail naming it.

    Each failed attempt logs what it waits for and when it tries again (exponential backoff
    up to 15 s), until `RLOPS_MLFLOW_WAIT_SECONDS` (default 120) have passed. A local store
    (file or database URI) has nothing to wait for.
    """
    uri = uri if uri is not None else os.environ.get(TRACKING_URI_ENV, "")
    if not uri.startswith(("http://", "https://")):
        return
    import httpx
    import tenacity

    budget = float(os.environ.get(WAIT_SECONDS_ENV, DEFAULT_WAIT_SECONDS))
    health = f"{uri.rstrip('/')}/health"

    attempt_timeout = min(10.0, max(1.0, budget / 4))  # several tries fit in the budget

    def probe() -> None:
        response = httpx.get(health, timeout=attempt_timeout, trust_env=False)
        response.raise_for_status()

    def announce(state: tenacity.RetryCallState) -> None:
        log.warning(
            "waiting for the MLflow tracking server %s: %s (attempt %d, next in %.0f s, "
            "giving up after %.0f s)",
            uri,
            state.outcome.exception() if state.outcome else "no answer",
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
            budget,
        )

    try:
        tenacity.Retrying(
            stop=tenacity.stop_after_delay(budget),
            wait=tenacity.wait_exponential(multiplier=1, max=15),
            retry=tenacity.retry_if_exception_type(httpx.HTTPError),
            before_sleep=announce,
            reraise=True,
        )(probe)
    except httpx.HTTPError as exc:
        raise TrackingServerUnreachable(
            f"MLflow tracking server {uri} did not answer GET /health within {budget:.0f} s "
            f"({exc}); check {TRACKING_URI_ENV} and that the server is up "
            f"({WAIT_SECONDS_ENV} sets how long to wait)"
        ) from None


class Tracker(Protocol):
    """Where a run's parameters, metrics, tags and files go; used as a context manager.

    `enabled` is False only for the tracker that records nothing, so callers can skip work
    whose sole purpose is to be recorded (lineage, uploaded checkpoints).
    """

    run_id: str | None
    enabled: bool

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def log_params(self, params: dict[str, Any]) -> None:
        """Record run parameters."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record metric values at an env step."""

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file to the run's artifact store."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set run tags."""

    def log_json(self, data: object, artifact_file: str) -> None:
        """Store a JSON-able object as an artifact file of the run."""


class NullTracker:
    """The tracker used when MLflow is not configured: does nothing, imports nothing."""

    run_id: str | None = None
    enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_json(self, data: object, artifact_file: str) -> None:
        pass


class MlflowTracker:
    """Logs to one MLflow run: a new one in `experiment`, or the existing `run_id`.

    A run this tracker created is ended on exit (FAILED if an exception escaped); an existing
    run passed by id is left open for whoever owns it, unless `end_on_exit` says otherwise.
    """

    enabled = True

    def __init__(
        self,
        experiment: str,
        run_name: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        end_on_exit: bool | None = None,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.run_id = run_id
        self.tags = dict(tags or {})
        self.end_on_exit = run_id is None if end_on_exit is None else end_on_exit
        self._pending: list[Any] = []
        self._client: Any = None

    def __enter__(self) -> Self:
        bound_mlflow_requests()
        wait_for_tracking_server()
        from mlflow import MlflowClient

        self._client = MlflowClient()
        if self.run_id is None:
            experiment_id = get_or_create_experiment(self._client, self.experiment)
            run = self._client.create_run(experiment_id, run_name=self.run_name, tags=self.tags)
            self.run_id = run.info.run_id
        elif self.tags:
            self.set_tags(self.tags)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()
        if self.end_on_exit:
            self._client.set_terminated(self.run_id, "FAILED" if exc_type else "FINISHED")

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._client.log_batch(
            self.run_id, params=[Param(key, str(value)) for key, value in params.items()]
        )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = _now_ms()
        self._pending += [Metric(k, float(v), timestamp, step) for k, v in metrics.items()]
        if len(self._pending) >= _METRIC_BATCH:
            self.flush()

    def flush(self) -> None:
        """Send buffered metric points."""
        while self._pending:
            chunk, self._pending = self._pending[:_METRIC_BATCH], self._pending[_METRIC_BATCH:]
            self._client.log_batch(self.run_id, metrics=chunk)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_json(self, data: object, artifact_file: str) -> None:
        self._client.log_dict(self.run_id, data, artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def get_or_create_experiment(client: Any, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (as a model-training experiment) if missing.

    Two tasks may create it at once (a seed sweep): the loser of that race finds the winner's.
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        kind = {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND}
        try:
            return client.create_experiment(name, artifact_location=artifact_location, tags=kind)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


def _now_ms() -> int:
    return int(time.time() * 1000)


def mlflow_configured() -> bool:
    """True when `MLFLOW_TRACKING_URI` points somewhere."""
    return bool(os.environ.get(TRACKING_URI_ENV))


def make_tracker(
    experiment: str = "rlops",
    run_name: str | None = None,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    end_on_exit: bool | None = None,
) -> Tracker:
    """An `MlflowTracker` if MLflow is configured, else a `NullTracker`."""
    if not mlflow_configured():
        return NullTracker()
    return MlflowTracker(experiment, run_name, run_id, tags, end_on_exit)


def logged_config(run_id: str) -> SACConfig:
    """The config MLflow run `run_id` trained with, as training logged it (`config.yaml`, read
    with `stored_config`: no preset applied again). MlflowException when it is not there."""
    import mlflow
    import yaml

    from rl_core.common.artifact_names import CONFIG_ARTIFACT
    from rl_core.common.config import stored_config

    with tempfile.TemporaryDirectory() as scratch:
        logged = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=scratch
        )
        return stored_config(yaml.safe_load(Path(logged).read_text()))
