"""The `export_torchscript` and `benchmark_latency` stages: the candidate's policy as an MLflow
model, and the latency of its exported files against the eager actor.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from rl_core.policy.latency import benchmark_latency, format_latency_table
from rl_core.policy.policy_model import load_registered_actors, log_policy_model
from rlops_airflow.stages.candidate import trained_actor
from rlops_registry import tags

log = logging.getLogger(__name__)


def export_candidate(run_id: str, actor_artifact: str) -> dict[str, Any]:
    """The candidate's policy as an MLflow LoggedModel: pyfunc folder around the TorchScript
    actor (checked against the eager one). A retry reuses the model an attempt finished."""
    client = MlflowClient()
    run = client.get_run(run_id)
    key = run.data.tags[tags.CANDIDATE_KEY]
    finished = [
        model
        for model in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"tags.`{tags.CANDIDATE_KEY}` = '{key}'"
        )
        if model.status == LoggedModelStatus.READY
    ]
    if finished:
        log.info("policy model %s already exported for %s", finished[0].model_id, key)
        return {"model_uri": f"models:/{finished[0].model_id}", "model_id": finished[0].model_id}
    actor, env = trained_actor(run_id, actor_artifact)
    logged = log_policy_model(actor, env, run_id, {tags.CANDIDATE_KEY: key})
    log.info("exported the policy as MLflow model %s", logged.model_uri)
    return {"model_uri": logged.model_uri, "model_id": logged.model_id}


def benchmark_candidate(
    run_id: str, actor_artifact: str, exported: dict[str, Any]
) -> dict[str, Any]:
    """Latency of the eager actor vs the exported files (TorchScript, and ONNX Runtime when the
    folder has the ONNX actor), as the artifact store holds them (and as the export recorded
    them: its files are checked against the LoggedModel's digests)."""
    eager, _ = trained_actor(run_id, actor_artifact)
    model_id = exported["model_id"]
    logged = MlflowClient().get_logged_model(model_id)  # its digests: the export's own files
    with tempfile.TemporaryDirectory() as scratch:
        actors, meta = load_registered_actors(
            exported["model_uri"], logged.tags, scratch, f"LoggedModel {model_id}"
        )
        rows = benchmark_latency(eager, actors.torchscript, meta.obs_dim, onnx=actors.onnx)
    metrics = {}
    for row in rows:
        b = row.batch_size
        metrics |= {
            f"latency_eager_median_us_b{b}": row.eager_median_us,
            f"latency_eager_p95_us_b{b}": row.eager_p95_us,
            f"latency_scripted_median_us_b{b}": row.exported_median_us,
            f"latency_scripted_p95_us_b{b}": row.exported_p95_us,
            f"speedup_b{b}": row.speedup,
        }
        if row.onnx_median_us is not None and row.onnx_p95_us is not None:
            metrics |= {
                f"latency_onnx_median_us_b{b}": row.onnx_median_us,
                f"latency_onnx_p95_us_b{b}": row.onnx_p95_us,
                f"onnx_speedup_b{b}": row.eager_median_us / row.onnx_median_us,
            }
    mlflow.log_metrics(metrics, step=0, run_id=run_id, model_id=exported["model_id"])
    client = MlflowClient()
    table = format_latency_table(rows)
    client.log_text(run_id, table, "benchmark/latency.txt")
    client.log_dict(run_id, [row.as_dict() for row in rows], "benchmark/latency.json")
    log.info("latency\n%s", table)
    return {"speedup": rows[0].speedup, "scripted_median_us": rows[0].exported_median_us}
