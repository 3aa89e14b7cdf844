"""Retraining that a drift rollback starts: the conf of the run, and the rule that stops a loop.

Airflow cannot pass a conf to a run an asset event starts, so the pipeline's first task derives
it here from the event (`rlops_airflow.assets.CHAMPION_DEGRADED`): the rolled-back version's
candidate run logged its resolved training config (`config.yaml`, rl_core/run/training.py), and the
conf rebuilt from it must give back the same config hash, or the run fails naming what differs.
At most one drift-triggered run per model per `drift_retrain_cooldown_hours`: the last one is
recorded on the registered model (`tags.DRIFT_RETRAIN_LAST`) with its Airflow run key, so a
retried or cleared task of the same run is not a second one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rlops_airflow import assets
from rlops_registry import tags


class RetrainError(ValueError):
    """A degraded event or a rolled-back version the pipeline cannot retrain from."""


@dataclass(frozen=True)
class Degradation:
    """What a `champion-degraded` event says (its `extra`)."""

    model_name: str
    rolled_back_version: str
    restored_version: str | None
    reason: str

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> Degradation:
        missing = [
            key
            for key in (assets.MODEL_NAME, assets.ROLLED_BACK_VERSION, assets.REASON)
            if not extra.get(key)
        ]
        if missing:
            raise RetrainError(f"champion-degraded event without {', '.join(missing)}: {extra}")
        restored = extra.get(assets.RESTORED_VERSION)
        return cls(
            str(extra[assets.MODEL_NAME]),
            str(extra[assets.ROLLED_BACK_VERSION]),
            None if restored is None else str(restored),
            str(extra[assets.REASON]),
        )

    def as_extra(self) -> dict[str, str | None]:
        return {
            assets.MODEL_NAME: self.model_name,
            assets.ROLLED_BACK_VERSION: self.rolled_back_version,
            assets.RESTORED_VERSION: self.restored_version,
            assets.REASON: self.reason,
        }

    @property
    def lineage(self) -> str:
        """The run's `drift_retrain_of`: `<model>@v<rolled-back version>`."""
        return f"{self.model_name}@v{self.rolled_back_version}"


@dataclass(frozen=True)
class RetrainMark:
    """The last drift-triggered run of a model: which Airflow run, and when it started."""

    run_key: str
    at: datetime

    def to_tag(self) -> str:
        return json.dumps({"run": self.run_key, "at": self.at.isoformat()})

    @classmethod
    def from_tag(cls, value: str) -> RetrainMark:
        recorded = json.loads(value)
        return cls(recorded["run"], datetime.fromisoformat(recorded["at"]))


def cooldown_refusal(
    previous: RetrainMark | None, run_key: str, now: datetime, cooldown: timedelta
) -> str | None:
    """Why this drift-triggered run must not train (another run of the model within the
    cooldown), or None. The same run again (a retry, a cleared task) is not another run."""
    if previous is None or previous.run_key == run_key:
        return None
    since = now - previous.at
    if since >= cooldown:
        return None
    return (
        f"drift-triggered retrain skipped: {previous.run_key} retrained this model "
        f"{since.total_seconds() / 3600:.1f} h ago, within the cooldown of "
        f"{cooldown.total_seconds() / 3600:g} h (drift_retrain_cooldown_hours)"
    )


def claim_retrain(model_name: str, run_key: str, now: datetime, cooldown: timedelta) -> str | None:
    """Record this run as the model's drift-triggered retrain, unless the cooldown refuses
    (then the refusal, and nothing recorded)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    recorded = client.get_registered_model(model_name).tags.get(tags.DRIFT_RETRAIN_LAST)
    refusal = cooldown_refusal(
        RetrainMark.from_tag(recorded) if recorded else None, run_key, now, cooldown
    )
    if refusal is None:
        mark = RetrainMark(run_key, now).to_tag()
        client.set_registered_model_tag(model_name, tags.DRIFT_RETRAIN_LAST, mark)
    return refusal


def retrain_conf(degradation: Degradation) -> dict[str, Any]:
    """The pipeline conf that trains the rolled-back version's recipe again: its env (id,
    packages, kwargs), steps, seed, checkpointing, eval seeds and every other SAC field its run
    logged, into the same registered model, with `drift_retrain_of` naming the version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from rl_core.common.artifact_names import CONFIG_ARTIFACT
    from rl_core.common.config import build_config
    from rl_core.common.tracking import logged_config
    from rlops_airflow.settings import PIPELINE_OWNED, PipelineSettings

    name, number = degradation.model_name, degradation.rolled_back_version
    try:
        version = MlflowClient().get_model_version(name, number)
        run_id = version.tags.get(tags.SOURCE_RUN_ID) or version.run_id
        config = logged_config(run_id)
    except MlflowException as exc:
        raise RetrainError(
            f"{name} v{number}: its training config ({CONFIG_ARTIFACT} of its run) cannot be "
            f"read: {exc.message}"
        ) from None
    seeds = list(config.eval_seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise RetrainError(f"{name} v{number}: eval seeds {seeds} are not consecutive")
    env = {"env_id": config.env_id, "env_packages": list(config.env_packages)}
    env["env_kwargs"] = dict(config.env_kwargs)
    base = build_config({**env, "use_preset": config.use_preset}).resolved()
    resolved = config.resolved()
    conf = {
        **env,
        "total_timesteps": config.total_timesteps,
        "seed": config.seed,
        "checkpoint_every": config.checkpoint_every,
        "eval_seed_start": seeds[0],
        "eval_episodes": len(seeds),
        "sac_overrides": {
            key: value
            for key, value in resolved.items()
            if key not in PIPELINE_OWNED and value != base[key]
        },
        "registered_model_name": name,
        "drift_retrain_of": degradation.lineage,
    }
    rebuilt = PipelineSettings(**conf).sac_config().resolved()
    differing = sorted(key for key in resolved if rebuilt[key] != resolved[key])
    if differing:
        raise RetrainError(
            f"{name} v{number}: the conf rebuilt from its logged config differs in "
            f"{', '.join(differing)}"
        )
    return conf
