"""The server's settings, read from `RLOPS_SERVING_*` environment variables and validated.

A bad value stops the server at start with the variable's name, instead of misbehaving later.
MLflow itself is configured the usual way (`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rlops_registry.registry import CHALLENGER, CHAMPION
from rlops_serving.auth import ApiKeyError, KeyRing

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
    runtime: Literal["torchscript", "onnx", "auto"] = "auto"
    """What runs the actor: TorchScript, ONNX Runtime (one thread), or `auto`: the faster of
    the two on a short batch-1 timing at load. A version without an ONNX actor (registered
    before ONNX export existed) always runs TorchScript."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    canary_alias: str = CHALLENGER
    """Registry alias of the version that answers the canary share of new episodes."""
    canary_fraction: float = Field(0.0, ge=0.0, le=1.0)
    """Share of new episodes (by a hash of their id) answered by the canary; 0 loads no canary."""
    episode_flush_seconds: float = Field(10.0, gt=0)
    """How often accepted episode reports are written to MLflow (and once more at shutdown)."""
    max_pending_episodes: int = Field(100_000, ge=1)
    """Reports waiting for MLflow (e.g. while it is down); beyond it new reports get a 429
    (accepted ones are never dropped)."""

    # -- who may call (rlops_serving.auth, rlops_serving.tickets) ----------------------------
    require_api_keys: bool = True
    """Off: every route answers anyone, and reports are refused (nobody to bind them to).
    Only for a server nothing else can reach (a benchmark, a notebook)."""
    api_keys_file: Path | None = None
    """JSON list of keys ({"id", "sha256", "scopes"}); `python -m rlops_serving.auth new`."""
    api_keys: SecretStr | None = None
    """The same JSON list inline, for platforms that inject secrets as variables."""
    ticket_secret: SecretStr | None = Field(None, min_length=32)
    """HMAC key of episode tickets, shared by replicas. Unset: random per process, so tickets
    do not survive a restart and one replica refuses another's."""
    ticket_ttl_seconds: int = Field(3600, ge=10, le=7 * 24 * 3600)
    """An episode must be reported within this long after it started."""
    step_reward_min: float = Field(-1000.0, allow_inf_nan=False)
    step_reward_max: float = Field(1000.0, allow_inf_nan=False)
    """Bounds of one step's reward where the env declares no `reward_range`: a report's return
    must lie within length x these."""
    report_rate_per_key: float = Field(50.0, gt=0)
    """Reports per second one key may send on average (token bucket)..."""
    report_burst: int = Field(200, ge=1)
    """...and at once."""
    max_reported_episodes: int = Field(200_000, ge=1)
    """Episode ids remembered (until their ticket expires) to refuse a second report; when full,
    reports get a 429 rather than an id being forgotten."""

    # -- limits (rlops_serving.server) --------------------------------------------------------
    max_concurrency: int = Field(256, ge=1)
    """Connections plus requests in progress; beyond it uvicorn answers 503."""
    header_timeout_seconds: float = Field(5.0, gt=0)
    """A connection whose request headers are not complete this long after it opened (or after
    its previous response) is closed."""
    body_timeout_seconds: float = Field(10.0, gt=0)
    """A request whose body has not arrived this long after its headers gets a 408."""

    @model_validator(mode="after")
    def _step_reward_bounds_ordered(self) -> Self:
        if self.step_reward_min > self.step_reward_max:
            raise ValueError("step_reward_min must be at most step_reward_max")
        return self

    def key_ring(self) -> KeyRing:
        """The keys the server accepts (none when `require_api_keys` is off)."""
        if self.api_keys_file is not None and self.api_keys is not None:
            raise ApiKeyError(
                f"set one of {ENV_PREFIX}API_KEYS_FILE or {ENV_PREFIX}API_KEYS, not both"
            )
        if self.api_keys_file is not None:
            try:
                raw = self.api_keys_file.read_text()
            except OSError as exc:
                raise ApiKeyError(f"{ENV_PREFIX}API_KEYS_FILE: {exc}") from None
            ring = KeyRing.parse(raw, str(self.api_keys_file))
        elif self.api_keys is not None:
            ring = KeyRing.parse(self.api_keys.get_secret_value(), f"{ENV_PREFIX}API_KEYS")
        else:
            ring = KeyRing({})
        if self.require_api_keys and not len(ring):
            raise ApiKeyError(
                "no API keys: every route but /health needs one. Mint a key with\n"
                "  python -m rlops_serving.auth new --id me --scope act --scope report "
                "--scope metrics\n"
                f"and put its entry in a JSON list in {ENV_PREFIX}API_KEYS_FILE (or "
                f"{ENV_PREFIX}API_KEYS); or set {ENV_PREFIX}REQUIRE_API_KEYS=false on a server "
                "nothing else can reach"
            )
        return ring

    def ticket_key(self) -> bytes:
        """The tickets' HMAC key (random for this process when none is configured)."""
        if self.ticket_secret is None:
            return secrets.token_bytes(32)
        return self.ticket_secret.get_secret_value().encode()

    @model_validator(mode="after")
    def _canary_is_another_alias(self) -> Self:
        if self.canary_fraction > 0 and self.canary_alias == self.model_alias:
            raise ValueError(
                f"canary_alias must differ from model_alias ({self.model_alias!r}) when "
                "canary_fraction > 0: a canary of the served alias would be the served version"
            )
        return self
