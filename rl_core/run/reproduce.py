"""Rebuild a run from its MLflow record alone, and say whether the numbers came back.

`reproduce()` takes a run id or `models:/<name>@<alias>` (or `models:/<name>/<version>`),
fetches the run's resolved config and lineage, lists what differs between then and now (code,
packages, machine), trains again with the same config and seeds, running the step compiler the
original ran (and switching from TorchScript's step to inductor's at its recorded env step),
evaluates on the same eval seeds and compares per-episode returns within a tolerance. The
reproduction is its own MLflow run, tagged `rlops.reproduces=<original run id>`. Needs MLflow
(`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from rl_core.common.config import SACConfig
from rl_core.common.tracking import (
    MlflowTracker,
    bound_mlflow_requests,
    logged_config,
    mlflow_configured,
    wait_for_tracking_server,
)
from rl_core.evaluation.episodes import EVALUATION_ARTIFACT, evaluate, log_evaluation
from rl_core.run import lineage
from rl_core.run.training import train

REPRODUCES_TAG = "rlops.reproduces"
COMPARED_LINEAGE = (
    "git_sha",
    "git_dirty",
    "python",
    "torch",
    "gymnasium",
    "numpy",
    "mlflow",
    "apache-airflow",
    "requirements_sha256",
    "env_spec_version",
    "cpu",
    "cpu_flags",
    "cpu_capability",
    "matmul_precision",
    "step_compiler",
    "torch_threads",
)


class ReproduceError(RuntimeError):
    """The reference cannot be reproduced: MLflow is not configured, or the reference names
    no run with a training record; the message says which."""


@dataclass(frozen=True)
class MetricRow:
    """One compared number: the original value, the reproduced one, within tolerance or not."""

    name: str
    original: float
    reproduced: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return abs(self.reproduced - self.original) <= self.tolerance


@dataclass(frozen=True)
class Reproduction:
    original_run_id: str
    reproduced_run_id: str
    rows: list[MetricRow]
    differences: dict[str, tuple[object, object]]
    """Lineage fields that differ: name -> (then, now)."""

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)


def resolve_run_id(reference: str) -> str:
    """A run id, or the source run of `models:/<name>@<alias>` / `models:/<name>/<version>`."""
    from mlflow import MlflowClient

    if not reference.startswith("models:/"):
        return reference
    name, sep, alias = reference.removeprefix("models:/").partition("@")
    client = MlflowClient()
    if sep:
        version = client.get_model_version_by_alias(name, alias)
    else:
        name, _, number = name.partition("/")
        version = client.get_model_version(name, number)
    return version.run_id


def compare(original: dict, reproduced: dict, tolerance: float) -> list[MetricRow]:
    """Mean, std and every episode's return, side by side."""
    rows = [
        MetricRow("mean return", original["mean"], reproduced["mean"], tolerance),
        MetricRow("std return", original["std"], reproduced["std"], tolerance),
    ]
    episodes = zip(original["seeds"], original["returns"], reproduced["returns"], strict=True)
    rows += [MetricRow(f"seed {seed}", a, b, tolerance) for seed, a, b in episodes]
    return rows


def lineage_differences(then: dict, now: dict) -> dict[str, tuple[object, object]]:
    return {k: (then.get(k), now.get(k)) for k in COMPARED_LINEAGE if then.get(k) != now.get(k)}


def replayed(config: SACConfig, then: dict) -> tuple[SACConfig, int | None]:
    """The config and `train(switch_at=...)` that run the gradient step as the original did:
    TorchScript throughout when its inductor step never ran, else inductor from its recorded
    switch step (from the first update for a run recorded before switches were)."""
    if config.effective_step_compiler != "inductor":
        return config, None
    if then.get("step_compiler") == "torchscript":
        return config.model_copy(update={"step_compiler": "torchscript"}), None
    return config, int(then.get(lineage.SWITCH_STEP, 0))


def _download_json(run_id: str, artifact: str, scratch: Path) -> dict:
    import mlflow

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact, dst_path=str(scratch)
    )
    return json.loads(Path(local).read_text())


def _original_record(run_id: str) -> tuple[SACConfig, dict, dict, str]:
    """Config, lineage, evaluation and experiment name of the run to reproduce."""
    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id).name
    config = logged_config(run_id)
    with tempfile.TemporaryDirectory() as scratch:
        then = _download_json(run_id, "lineage/lineage.json", Path(scratch))
        evaluation = _download_json(run_id, EVALUATION_ARTIFACT, Path(scratch))
    return config, then, evaluation, experiment


def _read_reference(reference: str) -> tuple[str, tuple[SACConfig, dict, dict, str]]:
    """The run id `reference` names and its record; a `ReproduceError` naming the reference
    when MLflow is not configured or holds no such run, model, alias or training record."""
    from mlflow.exceptions import MlflowException

    if not mlflow_configured():
        raise ReproduceError(
            "reproduce reads the original run from MLflow: set MLFLOW_TRACKING_URI"
        )
    bound_mlflow_requests()
    wait_for_tracking_server()  # a bounded wait naming the server, not minutes of retries
    try:
        run_id = resolve_run_id(reference)
        return run_id, _original_record(run_id)
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReproduceError(f"{reference}: {reason}") from None


def reproduce(reference: str, tolerance: float = 0.0, show_progress: bool = True) -> Reproduction:
    """Re-train and re-evaluate the referenced run; see the module docstring."""
    run_id, (config, then, original_eval, experiment) = _read_reference(reference)
    torch.set_num_threads(config.torch_threads)  # so the lineage below is the run's setting
    config, switch_at = replayed(config, then)
    differences = lineage_differences(then, lineage.collect(config))
    tags = {REPRODUCES_TAG: run_id}
    with MlflowTracker(experiment, run_name=f"reproduce {run_id[:8]}", tags=tags) as tracker:
        result = train(config, tracker=tracker, show_progress=show_progress, switch_at=switch_at)
        evaluation = evaluate(result.agent.act, config.env, original_eval["seeds"])
        log_evaluation(tracker, evaluation, result.steps)
    rows = compare(original_eval, evaluation.as_dict(), tolerance)
    return Reproduction(run_id, tracker.run_id, rows, differences)
