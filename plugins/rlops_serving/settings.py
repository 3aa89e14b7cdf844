"""The server's settings, read from `RLOPS_SERVING_*` environment variables and validated.

A bad value stops the server at start with the variable's name, instead of misbehaving later.
MLflow itself is configured the usual way (`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rlops_registry.registry import CHAMPION


class ServingSettings(BaseSettings):
    """What to serve, where, and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix="RLOPS_SERVING_", frozen=True)

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
