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

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from rl_core.common.artifact_names import (
    ACTOR_ARTIFACT_DIR,
    ACTOR_FILE,
    BEST_ACTOR_FILE,
    CHECKPOINT_ARTIFACT_DIR,
    CHECKPOINT_FILE,
)
from rl_core.common.config import SACConfig
from rl_core.common.tracking import MlflowTracker, logged_config
from rl_core.envs.spec import EnvSpec
from rl_core.evaluation.episodes import (
    EVAL_MEAN_RETURN,
    EVAL_RETURN_CI_HIGH,
    EVAL_RETURN_CI_LOW,
    EVALUATION_ARTIFACT,
    actor_policy,
    evaluate,
    log_evaluation,
)
from rl_core.evaluation.video import VIDEO_ARTIFACT_DIR, VIDEO_FILE, RenderError, record_episode
from rl_core.policy.checkpoint import load_actor
from rl_core.policy.export import exported_policy
from rl_core.policy.latency import benchmark_latency, format_latency_table
from rl_core.policy.policy_model import (
    load_registered_actors,
    load_registered_policy,
    log_policy_model,
)
from rl_core.run.training import EvaluationHook, train
from rl_core.sac.networks import Actor
from rlops_airflow.candidate_report import PromotionRecord, write_candidate_report
from rlops_airflow.mlflow_run import (
    AirflowRun,
    download,
    get_or_create_candidate_run,
    has_artifact,
)
from rlops_airflow.promotion import (
    Candidate,
    ChampionScore,
    Decision,
    decide,
    reward_interval,
)
from rlops_airflow.settings import PipelineSettings, ResolvedSettings, experiment_name
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry

log = logging.getLogger(__name__)

VIDEO_ARTIFACT = f"{VIDEO_ARTIFACT_DIR}/{VIDEO_FILE}"
_MAX_REASON = 1000  # characters of a failure kept in the tag (MLflow caps tag values)


def _checkpoint(run_id: str, scratch: Path) -> Path:
    return download(run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", scratch)


def _trained_actor(run_id: str, artifact: str) -> tuple[Actor, EnvSpec]:
    """An actor file of the run and its env spec: the small file, not the training state."""
    with tempfile.TemporaryDirectory() as scratch:
        return load_actor(download(run_id, artifact, Path(scratch)))


def _candidate_actor(settings: PipelineSettings, run_id: str) -> str:
    """Which actor of the run is the candidate: the best of the evaluations during training
    (when `use_best` and the run made them), else the last one."""
    if settings.use_best and has_artifact(run_id, ACTOR_ARTIFACT_DIR, BEST_ACTOR_FILE):
        return f"{ACTOR_ARTIFACT_DIR}/{BEST_ACTOR_FILE}"
    return f"{ACTOR_ARTIFACT_DIR}/{ACTOR_FILE}"


def train_candidate(settings: ResolvedSettings, airflow: AirflowRun, seed: int) -> dict[str, Any]:
    """Train candidate `seed` in its own MLflow run, resuming a retried attempt, with the
    recipe `validate_conf` resolved."""
    config = settings.sac_config(seed)
    run_id = get_or_create_candidate_run(airflow, seed, f"{config.env_id} seed {seed}")
    if settings.tuned_by:
        MlflowClient().set_tag(run_id, tags.TUNED_BY, settings.tuned_by)
    start_step = train_in_run(config, run_id)
    return {"mlflow_run_id": run_id, "seed": seed, "start_step": start_step}


def train_in_run(
    config: SACConfig, run_id: str, on_evaluation: EvaluationHook | None = None
) -> int:
    """Train `config` into MLflow run `run_id`, resuming a retried attempt; the step it
    started from (`total_timesteps` when the run already holds a finished training).

    Checkpoints are uploaded every `checkpoint_every` steps; a retry (after a crash, a
    killed worker or an expired execution-API token) continues from the last one.
    """
    client = MlflowClient()
    if client.get_run(run_id).data.tags.get(tags.TRAINED) == "true":
        log.info("MLflow run %s already holds a finished training; not training again", run_id)
        return config.total_timesteps
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
                on_evaluation=on_evaluation,
            )
    client.set_tag(run_id, tags.TRAINED, "true")
    log.info(
        "trained steps %d..%d at %.0f steps/s in MLflow run %s",
        result.start_step,
        result.steps,
        result.steps_per_second,
        run_id,
    )
    return result.start_step


def evaluate_candidate(settings: PipelineSettings, run_id: str) -> dict[str, Any]:
    """Quality gate: mean deterministic return on the fixed eval seeds vs `min_reward`, of
    the run's best or last actor (`use_best`); downstream tasks take the same one. Then, with
    `record_video`, a GIF of that actor's episode on the first eval seed."""
    actor_artifact = _candidate_actor(settings, run_id)
    actor, env = _trained_actor(run_id, actor_artifact)
    result = evaluate(actor_policy(actor), env, settings.eval_seeds)
    passed = settings.thresholds.reward_passes(result.mean)
    interval = reward_interval(result.returns, settings.confidence)
    with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
        log_evaluation(tracker, result, settings.total_timesteps)
        tracker.log_metrics(
            {EVAL_RETURN_CI_LOW: interval.low, EVAL_RETURN_CI_HIGH: interval.high},
            settings.total_timesteps,
        )
        tracker.set_tags({tags.GATE_RESULT: _verdict(passed)})
    log.info(
        "%s: mean return %s on seeds %s: reward gate %s (min %g)",
        actor_artifact,
        interval,
        list(settings.eval_seeds),
        "passed" if passed else "failed",
        settings.min_reward,
    )
    _record_video(settings, run_id, actor, env)
    return {
        "mlflow_run_id": run_id,
        "mean_return": result.mean,
        "std_return": result.std,
        "returns": result.returns,
        "actor_artifact": actor_artifact,
    }


def _record_video(settings: PipelineSettings, run_id: str, actor: Actor, env: EnvSpec) -> None:
    """One episode of the candidate on the first eval seed, as `video/episode.gif` on its run.

    A picture, not a verdict: nothing here may fail the task once the gate has spoken. Without
    a video, the run's tag `rlops.video` says why (a retry overwrites file and tag alike).
    """
    client = MlflowClient()
    if not settings.record_video:
        client.set_tag(run_id, tags.VIDEO, "none: record_video is off")
        return
    seed = settings.eval_seeds[0]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            gif = record_episode(actor_policy(actor), env, seed, Path(scratch) / VIDEO_FILE)
            client.log_artifact(run_id, str(gif), VIDEO_ARTIFACT_DIR)
    except RenderError as exc:
        log.warning("no video of the candidate: %s", exc)
        client.set_tag(run_id, tags.VIDEO, f"none: {exc}"[:_MAX_REASON])
        return
    except Exception as exc:  # unexpected: the traceback goes to the log; it costs the video only
        log.warning("no video of the candidate: recording failed", exc_info=True)
        reason = f"none: recording failed ({type(exc).__name__}); see the evaluate task's log"
        client.set_tag(run_id, tags.VIDEO, reason)
        return
    client.set_tag(run_id, tags.VIDEO, VIDEO_ARTIFACT)
    log.info("episode on env seed %d recorded as %s of MLflow run %s", seed, VIDEO_ARTIFACT, run_id)


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
        client.set_tag(row["mlflow_run_id"], tags.SWEEP_RANK, str(row["rank"]))
        client.set_tag(row["mlflow_run_id"], tags.SWEEP_WINNER, winner["mlflow_run_id"])
        if row["mlflow_run_id"] != winner["mlflow_run_id"]:
            client.set_terminated(row["mlflow_run_id"], "FINISHED")  # its story ends here
    client.set_tag(winner["mlflow_run_id"], tags.SELECTED, "true")
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
    actor, env = _trained_actor(run_id, actor_artifact)
    logged = log_policy_model(actor, env, run_id, {tags.CANDIDATE_KEY: key})
    log.info("exported the policy as MLflow model %s", logged.model_uri)
    return {"model_uri": logged.model_uri, "model_id": logged.model_id}


def benchmark_candidate(
    run_id: str, actor_artifact: str, exported: dict[str, Any]
) -> dict[str, Any]:
    """Latency of the eager actor vs the exported files (TorchScript, and ONNX Runtime when the
    folder has the ONNX actor), as the artifact store holds them (and as the export recorded
    them: its files are checked against the LoggedModel's digests)."""
    eager, _ = _trained_actor(run_id, actor_artifact)
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


class ModelEnvMismatch(ValueError):
    """A run would put a policy of one env into a registered model that holds another's."""


def check_model_env(settings: ResolvedSettings) -> None:
    """Refuse a run whose env (id and kwargs) differs from its registered model's.

    One registered model holds policies of one env: its champion is what candidates are
    compared with, episode by episode, and what the policy server hands its clients. Every
    version is registered through this check, so the latest version's env is the model's.
    """
    _check_env(settings.model_name, settings.sac_config().env)


def _check_env(model_name: str, env: EnvSpec) -> None:
    registry = ModelRegistry(model_name)
    latest = registry.latest_version()
    if latest is None:
        return
    if tags.ENV_ID not in latest.tags:
        raise ModelEnvMismatch(
            f"registered model {registry.name!r} (latest v{latest.version}) records no env "
            f"(version tag {tags.ENV_ID!r}): it was not registered by rlops, so its policies "
            "cannot be compared with this run's; set registered_model_name to a model of its own"
        )
    theirs = EnvSpec(
        latest.tags[tags.ENV_ID], (), json.loads(latest.tags.get(tags.ENV_KWARGS, "{}"))
    )
    if (theirs.id, dict(theirs.kwargs)) != (env.id, dict(env.kwargs)):
        raise ModelEnvMismatch(
            f"registered model {registry.name!r} holds policies of {theirs} (latest v"
            f"{latest.version}); this run trains {EnvSpec(env.id, (), env.kwargs)}: set "
            "registered_model_name to a model of its own"
        )


def register_candidate(
    settings: PipelineSettings,
    airflow: AirflowRun,
    candidate: dict[str, Any],
    exported: dict[str, Any],
    latency: dict[str, Any],
) -> dict[str, Any]:
    """A model version of the exported policy (reused on retry), tagged and `challenger`;
    its env and config hash are those of the config the candidate's run logged."""
    run_id = candidate["mlflow_run_id"]
    config = logged_config(run_id)
    _check_env(settings.model_name, config.env)
    registry = ModelRegistry(settings.model_name)
    reward, speedup = candidate["mean_return"], latency["speedup"]
    gate = settings.thresholds
    client = MlflowClient()
    mlflow.log_metrics(  # the gate's figure on the model itself, beside its latency
        {EVAL_MEAN_RETURN: reward}, step=0, run_id=run_id, model_id=exported["model_id"]
    )
    version = registry.register(
        exported["model_uri"],
        exported["model_id"],
        run_id,
        airflow.key,
        {
            tags.REWARD: f"{reward:.4f}",
            tags.SPEEDUP: f"{speedup:.4f}",
            tags.REWARD_GATE: _verdict(gate.reward_passes(reward)),
            tags.SPEEDUP_GATE: _verdict(gate.speedup_passes(speedup)),
            tags.EVAL_SEEDS: json.dumps(list(settings.eval_seeds)),
            tags.EVAL_RETURNS: json.dumps([round(r, 4) for r in candidate["returns"]]),
            tags.ENV_ID: config.env_id,
            tags.ENV_KWARGS: json.dumps(dict(config.env_kwargs), sort_keys=True),
            tags.CONFIG_HASH: config.config_hash(),
            tags.GIT_SHA: client.get_run(run_id).data.tags.get("lineage.git_sha", "unknown"),
            tags.AIRFLOW_DAG_ID: airflow.dag_id,
            tags.AIRFLOW_RUN_ID: airflow.run_id,
            tags.SOURCE_RUN_ID: run_id,
            tags.SEED: candidate["seed"],
        }
        | ({tags.TUNED_BY: settings.tuned_by} if settings.tuned_by else {}),
    )
    registry.set_alias(CHALLENGER, version.version)
    client.set_tag(run_id, tags.MODEL_NAME, registry.name)
    client.set_tag(run_id, tags.MODEL_VERSION, str(version.version))
    log.info("registered %s version %s (alias %s)", registry.name, version.version, CHALLENGER)
    return {"model_name": registry.name, "version": str(version.version)}


def promote_candidate(
    settings: PipelineSettings,
    candidate: dict[str, Any],
    latency: dict[str, Any],
    registered: dict[str, Any],
) -> dict[str, Any]:
    """Apply the promotion rule to the figures upstream measured; a rejection is an outcome,
    not an error."""
    run_id = candidate["mlflow_run_id"]
    registry = ModelRegistry(settings.model_name)
    scored = Candidate(registered["version"], candidate["returns"], latency["speedup"])
    champion_score = _champion_score(registry, settings)
    decision = decide(scored, settings.thresholds, champion_score)
    _apply(registry, scored, decision)
    client = MlflowClient()
    client.set_tag(run_id, tags.OUTCOME, decision.outcome)
    champion = registry.alias(CHAMPION)
    record = PromotionRecord(
        scored,
        champion_score,
        settings.thresholds,
        settings.eval_seeds,
        decision,
        registry.name,
        str(champion.version) if champion else None,
    )
    write_candidate_report(run_id, record)  # after the decision: never raises
    client.set_terminated(run_id, "FINISHED")  # the last task: the candidate's run is complete
    log.info("candidate v%s: %s", scored.version, decision.outcome)
    return {
        "outcome": decision.outcome,
        "version": scored.version,
        "champion_version": str(champion.version) if champion else None,
    }


def _apply(registry: ModelRegistry, candidate: Candidate, decision: Decision) -> None:
    if decision.promote:
        replaced = registry.crown(candidate.version)
        registry.set_tags(candidate.version, {tags.PROMOTION: "promoted"})
        if replaced is not None:
            log.info("champion moves v%s -> v%s", replaced.version, candidate.version)
        return
    # Rejected: tag the version; `champion` stays exactly where it was.
    registry.set_tags(
        candidate.version,
        {tags.PROMOTION: "rejected", tags.REJECTION_REASONS: "; ".join(decision.reasons)},
    )


def _champion_score(registry: ModelRegistry, settings: PipelineSettings) -> ChampionScore | None:
    """The champion's episode returns on *this run's* eval seeds: those its own evaluation
    recorded when the seeds are the same, else a re-evaluation of it on these seeds."""
    champion = registry.alias(CHAMPION)
    if champion is None:
        return None
    seeds = list(settings.eval_seeds)
    source_run = champion.tags[tags.SOURCE_RUN_ID]
    if has_artifact(source_run, *EVALUATION_ARTIFACT.rsplit("/", 1)):
        recorded = mlflow.artifacts.load_dict(f"runs:/{source_run}/{EVALUATION_ARTIFACT}")
        if recorded["seeds"] == seeds:
            return ChampionScore(str(champion.version), recorded["returns"])
    with tempfile.TemporaryDirectory() as scratch:  # checked against its version's digests
        uri = f"models:/{registry.name}/{champion.version}"
        what = f"{registry.name} v{champion.version} (champion)"
        actor, meta = load_registered_policy(uri, champion.tags, scratch, what)
    result = evaluate(exported_policy(actor), meta.env, seeds)
    log.info("champion v%s re-evaluated on seeds %s: %.1f", champion.version, seeds, result.mean)
    return ChampionScore(str(champion.version), result.returns)


def _verdict(passed: bool) -> str:
    return "passed" if passed else "failed"
