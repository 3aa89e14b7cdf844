"""The `register` stage: a model version of the exported policy, alias `challenger`.

The env check lives here because registering is where a policy enters a registered model, which
holds policies of one env; `validate_env` runs the same check first, so a run that would be
refused here fails before it trains.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mlflow
from mlflow import MlflowClient

from rl_core.common.tracking import logged_config
from rl_core.envs.spec import EnvSpec
from rl_core.evaluation.episodes import EVAL_MEAN_RETURN
from rlops_airflow.mlflow_run import AirflowRun
from rlops_airflow.settings import PipelineSettings, ResolvedSettings
from rlops_airflow.stages.candidate import verdict
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, ModelRegistry

log = logging.getLogger(__name__)


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
            tags.REWARD_GATE: verdict(gate.reward_passes(reward)),
            tags.SPEEDUP_GATE: verdict(gate.speedup_passes(speedup)),
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
