"""The server's settings, read from `RLOPS_SERVING_*` environment variables and validated.

A bad value stops the server at start with the variable's name, instead of misbehaving later.
MLflow itself is configured the usual way (`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rlops_registry.registry import CHALLENGER, CHAMPION

ENV_PREFIX = "RLOPS_SERVING_"


class ServingSettings(BaseSettings):
    """What to serve, where, and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    model_name: str = "rlops-sac-pendulum"
    """Registered model name in the MLflow registry."""
    model_alias: str = CHAMPION
    """Registry alias to serve and follow."""
    host: str = "127.0.0.1"
    """Bind address; a container sets 0.0.0.0 and publishes the port on the host's loopback."""
    port: int = Field(8000, ge=1, le=65535)
    poll_seconds: float = Field(30.0, gt=0)
    """How often the registry is asked where the alias points (hot reload latency)."""
    max_batch: int = Field(1024, ge=1, le=65536)
    """Most observations per request; more is a 422."""
    max_body_bytes: int = Field(8 << 20, ge=1024)
    """Largest request body accepted (413 above it), checked before anything is parsed."""
    torch_threads: int = Field(1, ge=1)
    """Intra-op threads: 1 is fastest for small MLPs; scale out with replicas instead."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    canary_alias: str = CHALLENGER
    """Registry alias of the version that answers the canary share of new episodes."""
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of new episodes (by a hash of their id) answered by the canary; 0 loads no canary."""
    max_open_episodes: int = Field(100_000, ge=1)
    """Episodes kept on the version that started them; beyond it the least recent is forgotten."""
    episode_flush_seconds: float = Field(10.0, gt=0)
    """How often accepted episode reports are written to MLflow (and once more at shutdown)."""
    max_pending_episodes: int = Field(100_000, ge=1)
    """Reports waiting for MLflow (e.g. while it is down); beyond it the oldest are dropped."""

    @model_validator(mode="after")
    def _canary_is_another_alias(self) -> Self:
        if self.canary_fraction > 0 and self.canary_alias == self.model_alias:
            raise ValueError(
                f"canary_alias must differ from model_alias ({self.model_alias!r}) when "
                "canary_fraction > 0: a canary of the served alias would be the served version"
            )
        return self
