"""The pipeline's steps, one function per Airflow task.

Each takes the run's settings and small values from upstream (an MLflow run id, a few numbers)
and returns small values for XCom; checkpoints and exported files go through the MLflow
artifact store. Every step is safe to retry: it finds its MLflow run by the Airflow run key,
resumes training from the last checkpoint, and reuses an existing model version.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from mlflow import MlflowClient

from rl_core.benchmark import benchmark_latency, format_latency_table
from rl_core.checkpoint import load_agent
from rl_core.evaluation import evaluate, log_evaluation
from rl_core.export import export_actor, exported_policy, load_exported
from rl_core.tracking import MlflowTracker
from rl_core.training import CHECKPOINT_ARTIFACT_DIR, train
from rlops_airflow.mlflow_run import (
    AirflowRun,
    download,
    get_or_create_candidate_run,
    has_artifact,
)
from rlops_airflow.promotion import Candidate, ChampionScore, Decision, Thresholds, decide
from rlops_airflow.registry import CHALLENGER, CHAMPION, ModelRegistry
from rlops_airflow.settings import PipelineSettings, experiment_name

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_DIR = "model"
"""Artifact folder registered as the model version: actor.pt + export.json."""
ACTOR_FILE = "actor.pt"
TRAINED_TAG = "rlops.trained"
SELECTED_TAG = "rlops.selected"
"""On the candidate run the seed sweep picked: the run the rest of the pipeline logs to."""
OUTCOME_TAG = "rlops.outcome"


def _checkpoint(run_id: str, scratch: Path) -> Path:
    return download(run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", scratch)


def train_candidate(settings: PipelineSettings, airflow: AirflowRun, seed: int) -> dict[str, Any]:
    """Train candidate `seed` in its own MLflow run, resuming a retried attempt.

    Checkpoints are uploaded every `checkpoint_every` steps; a retry (after a crash, a
    killed worker or an expired execution-API token) continues from the last one.
    """
    config = settings.sac_config(seed)
    run_id = get_or_create_candidate_run(airflow, seed, f"{config.env_id} seed {seed}")
    client = MlflowClient()
    done = {"mlflow_run_id": run_id, "seed": seed}
    if client.get_run(run_id).data.tags.get(TRAINED_TAG) == "true":
        log.info("MLflow run %s already holds a finished training; not training again", run_id)
        return {**done, "start_step": config.total_timesteps}
    with tempfile.TemporaryDirectory() as scratch:
        resume_from = None
        if has_artifact(run_id, CHECKPOINT_ARTIFACT_DIR, CHECKPOINT_FILE):
            resume_from = _checkpoint(run_id, Path(scratch) / "resume")
        with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
            result = train(
                config,
                tracker=tracker,
                checkpoint_path=Path(scratch) / CHECKPOINT_FILE,
                resume_from=resume_from,
                show_progress=False,
            )
    client.set_tag(run_id, TRAINED_TAG, "true")
    log.info(
        "trained steps %d..%d at %.0f steps/s in MLflow run %s",
        result.start_step,
        result.steps,
        result.steps_per_second,
        run_id,
    )
    return {**done, "start_step": result.start_step}


def evaluate_candidate(settings: PipelineSettings, run_id: str) -> dict[str, Any]:
    """Quality gate: mean deterministic return on the fixed eval seeds vs `min_reward`."""
    with tempfile.TemporaryDirectory() as scratch:
        agent, config = load_agent(_checkpoint(run_id, Path(scratch)))
    result = evaluate(agent.act, config.env_id, settings.eval_seeds)
    passed = result.mean >= settings.min_reward
    with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
        log_evaluation(tracker, result, config.total_timesteps)
        tracker.set_tags({"rlops.gate.reward": _verdict(passed)})
    log.info(
        "mean return %.1f ± %.1f on seeds %s: reward gate %s (min %g)",
        result.mean,
        result.std,
        list(settings.eval_seeds),
        "passed" if passed else "failed",
        settings.min_reward,
    )
    return {
        "mlflow_run_id": run_id,
        "mean_return": result.mean,
        "std_return": result.std,
        "reward_gate_passed": passed,
    }


def select_candidate(evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The best candidate of the seed sweep (highest mean return; ties: first seed).

    Every candidate keeps its MLflow run; each gets its rank, and the winner's run gets the
    comparison table, so the sweep is visible where the rest of the story is.
    """
    ranked = sorted(evaluations, key=lambda e: (-e["mean_return"], e["seed"]))
    winner = ranked[0]
    table = [
        {
            "rank": rank,
            "seed": e["seed"],
            "mlflow_run_id": e["mlflow_run_id"],
            "mean_return": e["mean_return"],
            "std_return": e["std_return"],
        }
        for rank, e in enumerate(ranked, start=1)
    ]
    client = MlflowClient()
    for row in table:
        client.set_tag(row["mlflow_run_id"], "rlops.sweep.rank", str(row["rank"]))
        client.set_tag(row["mlflow_run_id"], "rlops.sweep.winner", winner["mlflow_run_id"])
        if row["mlflow_run_id"] != winner["mlflow_run_id"]:
            client.set_terminated(row["mlflow_run_id"], "FINISHED")  # its story ends here
    client.set_tag(winner["mlflow_run_id"], SELECTED_TAG, "true")
    client.log_dict(winner["mlflow_run_id"], table, "sweep/comparison.json")
    client.log_text(winner["mlflow_run_id"], _markdown(table), "sweep/comparison.md")
    log.info("seed sweep of %d:\n%s", len(table), _markdown(table))
    return winner


def _markdown(table: list[dict[str, Any]]) -> str:
    lines = ["| rank | seed | mean return | std | MLflow run |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['rank']} | {r['seed']} | {r['mean_return']:.1f} | {r['std_return']:.1f} "
        f"| {r['mlflow_run_id']} |"
        for r in table
    ]
    return "\n".join(lines) + "\n"


def export_candidate(run_id: str) -> dict[str, Any]:
    """TorchScript actor + equivalence check, uploaded as the run's `model/` folder."""
    with tempfile.TemporaryDirectory() as scratch:
        agent, config = load_agent(_checkpoint(run_id, Path(scratch)))
        model_dir = Path(scratch) / MODEL_DIR
        exported = export_actor(agent.actor, model_dir / ACTOR_FILE, config.env_id)
        meta = {
            "format": "torchscript",
            "file": ACTOR_FILE,
            "env_id": config.env_id,
            "obs_dim": agent.actor.trunk[0].in_features,
            "act_dim": agent.actor.act_dim,
            "max_abs_diff_vs_eager": exported.max_abs_diff,
            "observations_checked": exported.n_checked,
            "torch_version": torch.__version__,
        }
        (model_dir / "export.json").write_text(json.dumps(meta, indent=2))
        MlflowClient().log_artifacts(run_id, str(model_dir), MODEL_DIR)
    log.info("exported TorchScript actor, max |Δaction| %.2e", exported.max_abs_diff)
    return {"model_uri": f"runs:/{run_id}/{MODEL_DIR}", "max_abs_diff": exported.max_abs_diff}


def benchmark_candidate(run_id: str) -> dict[str, Any]:
    """Latency of the eager actor vs the exported file, as the artifact store holds it."""
    with tempfile.TemporaryDirectory() as scratch:
        agent, _ = load_agent(_checkpoint(run_id, Path(scratch)))
        exported = load_exported(download(run_id, f"{MODEL_DIR}/{ACTOR_FILE}", Path(scratch)))
        rows = benchmark_latency(agent.actor, exported, agent.actor.trunk[0].in_features)
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
    client = MlflowClient()
    with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
        tracker.log_metrics(metrics, step=0)
    table = format_latency_table(rows)
    client.log_text(run_id, table, "benchmark/latency.txt")
    client.log_dict(run_id, [row.as_dict() for row in rows], "benchmark/latency.json")
    log.info("latency\n%s", table)
    return {"speedup": rows[0].speedup, "scripted_median_us": rows[0].exported_median_us}


def register_candidate(
    settings: PipelineSettings,
    airflow: AirflowRun,
    candidate: dict[str, Any],
    latency: dict[str, Any],
) -> dict[str, Any]:
    """A model version for the exported actor (reused on retry), tagged and `challenger`."""
    run_id = candidate["mlflow_run_id"]
    config = settings.sac_config(candidate["seed"])
    registry = ModelRegistry(settings.registered_model_name)
    reward, speedup = candidate["mean_return"], latency["speedup"]
    version = registry.register(
        run_id,
        MODEL_DIR,
        airflow.key,
        {
            "reward": f"{reward:.4f}",
            "speedup": f"{speedup:.4f}",
            "gate.reward": _verdict(reward >= settings.min_reward),
            "gate.speedup": _verdict(speedup >= settings.min_speedup),
            "eval_seeds": json.dumps(list(settings.eval_seeds)),
            "env_id": config.env_id,
            "config_hash": config.config_hash(),
            "git_sha": MlflowClient().get_run(run_id).data.tags.get("lineage.git_sha", "unknown"),
            "airflow.dag_id": airflow.dag_id,
            "airflow.run_id": airflow.run_id,
            "source_run_id": run_id,
            "seed": candidate["seed"],
        },
    )
    registry.set_alias(CHALLENGER, version.version)
    client = MlflowClient()
    client.set_tag(run_id, "rlops.model_name", registry.name)
    client.set_tag(run_id, "rlops.model_version", str(version.version))
    log.info("registered %s version %s (alias %s)", registry.name, version.version, CHALLENGER)
    return {"model_name": registry.name, "version": str(version.version)}


def promote_candidate(
    settings: PipelineSettings, run_id: str, registered: dict[str, Any]
) -> dict[str, Any]:
    """Apply the promotion rule; a rejection is an outcome, not an error."""
    registry = ModelRegistry(settings.registered_model_name)
    version = registry.version(registered["version"])
    candidate = Candidate(
        str(version.version), float(version.tags["reward"]), float(version.tags["speedup"])
    )
    thresholds = Thresholds(
        settings.min_reward, settings.min_speedup, settings.compare_with_champion
    )
    decision = decide(candidate, thresholds, _champion_score(registry, settings))
    _apply(registry, candidate, decision)
    client = MlflowClient()
    client.set_tag(run_id, OUTCOME_TAG, decision.outcome)
    client.set_terminated(run_id, "FINISHED")  # the last task: the candidate's run is complete
    champion = registry.alias(CHAMPION)
    log.info("candidate v%s: %s", candidate.version, decision.outcome)
    return {
        "outcome": decision.outcome,
        "version": candidate.version,
        "champion_version": str(champion.version) if champion else None,
    }


def _apply(registry: ModelRegistry, candidate: Candidate, decision: Decision) -> None:
    if decision.promote:
        replaced = registry.crown(candidate.version)
        registry.set_tags(candidate.version, {"rlops.promotion": "promoted"})
        if replaced is not None:
            log.info("champion moves v%s -> v%s", replaced.version, candidate.version)
        return
    # Rejected: tag the version; `champion` stays exactly where it was.
    registry.set_tags(
        candidate.version,
        {"rlops.promotion": "rejected", "rlops.rejection_reasons": "; ".join(decision.reasons)},
    )


def _champion_score(registry: ModelRegistry, settings: PipelineSettings) -> ChampionScore | None:
    """The champion's return on *this run's* eval seeds (re-evaluated if its seeds differ)."""
    champion = registry.alias(CHAMPION)
    if champion is None:
        return None
    seeds = list(settings.eval_seeds)
    if json.loads(champion.tags.get("eval_seeds", "null")) == seeds:
        return ChampionScore(str(champion.version), float(champion.tags["reward"]))
    with tempfile.TemporaryDirectory() as scratch:
        actor = load_exported(download(champion.run_id, f"{MODEL_DIR}/{ACTOR_FILE}", Path(scratch)))
    result = evaluate(exported_policy(actor), champion.tags["env_id"], seeds)
    log.info("champion v%s re-evaluated on seeds %s: %.1f", champion.version, seeds, result.mean)
    return ChampionScore(str(champion.version), result.mean)


def _verdict(passed: bool) -> str:
    return "passed" if passed else "failed"
