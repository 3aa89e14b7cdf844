"""The pipeline's settings, built from the DAG run's params and validated once more in tasks.

The trigger form and REST API already validate params against the DAG's JSON schema; this
model is the typed view the task code uses, and it turns params into an rl_core `SACConfig`.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rl_core.config import SACConfig, build_config

EXPERIMENT_ENV = "RLOPS_MLFLOW_EXPERIMENT"
ARTIFACT_LOCATION_ENV = "RLOPS_MLFLOW_ARTIFACT_LOCATION"
DEFAULT_EXPERIMENT = "rlops"


class PipelineSettings(BaseModel):
    """Everything one pipeline run needs to know; field names match the DAG's params."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    env_id: str = "Pendulum-v1"
    total_timesteps: int = Field(20_000, ge=1)
    seed: int = Field(0, ge=0)
    n_seeds: int = Field(1, ge=1)
    eval_episodes: int = Field(10, ge=1)
    eval_seed_start: int = Field(1000, ge=0)
    checkpoint_every: int = Field(5_000, ge=0)
    sac_overrides: dict[str, Any] = Field(default_factory=dict)
    min_reward: float = -250.0
    min_speedup: float = Field(1.5, ge=0.0)
    compare_with_champion: bool = True
    registered_model_name: str = "rlops-sac-pendulum"

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.eval_seed_start, self.eval_seed_start + self.eval_episodes))

    @property
    def sweep_seeds(self) -> list[int]:
        """Training seeds of the sweep: seed, seed+1, ..., one candidate each."""
        return list(range(self.seed, self.seed + self.n_seeds))

    def sac_config(self, seed: int | None = None) -> SACConfig:
        """The training recipe: the form's fields plus any advanced `sac_overrides`."""
        return build_config(
            {
                **self.sac_overrides,
                "env_id": self.env_id,
                "total_timesteps": self.total_timesteps,
                "seed": self.seed if seed is None else seed,
                "eval_seeds": self.eval_seeds,
                "checkpoint_every": self.checkpoint_every,
            }
        )


def experiment_name() -> str:
    return os.environ.get(EXPERIMENT_ENV, DEFAULT_EXPERIMENT)


def artifact_location() -> str | None:
    """Where a newly created experiment stores artifacts (None: the server's default)."""
    return os.environ.get(ARTIFACT_LOCATION_ENV) or None
