"""The `promote` stage: the I/O around the promotion rule. `rlops_airflow.promotion` decides on
numbers only; this scores the champion on the run's eval seeds, applies the decision to the
registry's aliases and tags, and writes the candidate's report.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import mlflow
from mlflow import MlflowClient

from rl_core.evaluation.episodes import EVALUATION_ARTIFACT, evaluate
from rl_core.policy.export import exported_policy
from rl_core.policy.policy_model import load_registered_policy
from rlops_airflow.candidate_report import PromotionRecord, write_candidate_report
from rlops_airflow.mlflow_run import has_artifact
from rlops_airflow.promotion import Candidate, ChampionScore, Decision, decide
from rlops_airflow.settings import PipelineSettings
from rlops_registry import tags
from rlops_registry.registry import CHAMPION, ModelRegistry

log = logging.getLogger(__name__)


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
