"""The `evaluate` and `select_candidate` stages: the quality gate on each seed's candidate
(with an episode GIF), then the sweep's best candidate, the one the later stages take.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from rl_core.common.tracking import MlflowTracker
from rl_core.envs.spec import EnvSpec
from rl_core.evaluation.episodes import (
    EVAL_RETURN_CI_HIGH,
    EVAL_RETURN_CI_LOW,
    actor_policy,
    evaluate,
    log_evaluation,
)
from rl_core.evaluation.video import (
    VIDEO_ARTIFACT,
    VIDEO_ARTIFACT_DIR,
    VIDEO_FILE,
    RenderError,
    record_episode,
)
from rl_core.sac.networks import Actor
from rlops_airflow.promotion import reward_interval
from rlops_airflow.settings import PipelineSettings, experiment_name
from rlops_airflow.stages.candidate import candidate_actor, trained_actor, verdict
from rlops_registry import tags

log = logging.getLogger(__name__)


def evaluate_candidate(settings: PipelineSettings, run_id: str) -> dict[str, Any]:
    """Quality gate: mean deterministic return on the fixed eval seeds vs `min_reward`, of
    the run's best or last actor (`use_best`); downstream tasks take the same one. Then, with
    `record_video`, a GIF of that actor's episode on the first eval seed."""
    actor_artifact = candidate_actor(settings, run_id)
    actor, env = trained_actor(run_id, actor_artifact)
    result = evaluate(actor_policy(actor), env, settings.eval_seeds)
    passed = settings.thresholds.reward_passes(result.mean)
    interval = reward_interval(result.returns, settings.confidence)
    with MlflowTracker(experiment_name(), run_id=run_id, end_on_exit=False) as tracker:
        log_evaluation(tracker, result, settings.total_timesteps)
        tracker.log_metrics(
            {EVAL_RETURN_CI_LOW: interval.low, EVAL_RETURN_CI_HIGH: interval.high},
            settings.total_timesteps,
        )
        tracker.set_tags({tags.GATE_RESULT: verdict(passed)})
    log.info(
        "%s: mean return %s on seeds %s: reward gate %s (min %g)",
        actor_artifact,
        interval,
        list(settings.eval_seeds),
        verdict(passed),
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
        client.set_tag(run_id, tags.VIDEO, f"none: {exc}"[: tags.REASON_LIMIT])
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
