"""The stack's policy server: `python -m rlops_serving` on 127.0.0.1, as compose runs it.

It logs in to MLflow as `policy-server` (reads models, writes only the served-episodes
experiment) and serves `rlops-sac-pendulum@champion`. Its API keys are minted here, as
docker/gen_env.py mints compose's: a client token (scopes act and report) and a metrics token
(scope metrics), kept in state.json; the server's environment holds only their SHA-256 list
(`RLOPS_SERVING_API_KEYS`) and the episode tickets' secret.
"""

from __future__ import annotations

import json
import secrets

from pydantic import BaseModel, Field

from rlops_serving.auth import KeyScope, new_token, token_digest

MODEL_NAME = "rlops-sac-pendulum"
"""What the pipeline registers for its default env, and what compose serves."""
POLL_SECONDS = 2.0
"""How often the server asks where the alias points (compose: 30 s): on a dev stack a new
champion is served, and a test sees it, within seconds."""
FLUSH_SECONDS = 2.0
"""How often accepted episode reports are written to MLflow (the server's default: 10 s)."""
CLIENT_KEY = "devstack-client"
METRICS_KEY = "devstack-metrics"
KEY_SCOPES = {CLIENT_KEY: [KeyScope.ACT, KeyScope.REPORT], METRICS_KEY: [KeyScope.METRICS]}


class ServingKeys(BaseModel):
    """The server's credentials: the tokens (for clients, never for the server) and the
    tickets' HMAC key."""

    client_token: str = Field(default_factory=lambda: new_token(CLIENT_KEY))
    metrics_token: str = Field(default_factory=lambda: new_token(METRICS_KEY))
    ticket_secret: str = Field(default_factory=lambda: secrets.token_urlsafe(32))

    def key_list(self) -> str:
        """`RLOPS_SERVING_API_KEYS`: each token's id, scopes and SHA-256 (no token)."""
        tokens = {CLIENT_KEY: self.client_token, METRICS_KEY: self.metrics_token}
        return json.dumps(
            [
                {"id": key_id, "sha256": token_digest(tokens[key_id]), "scopes": scopes}
                for key_id, scopes in KEY_SCOPES.items()
            ]
        )

    def server_env(self, port: int) -> dict[str, str]:
        """The server's `RLOPS_SERVING_*` settings (MLflow's login comes from the stack)."""
        return {
            "RLOPS_SERVING_HOST": "127.0.0.1",
            "RLOPS_SERVING_PORT": str(port),
            "RLOPS_SERVING_MODEL_NAME": MODEL_NAME,
            "RLOPS_SERVING_POLL_SECONDS": str(POLL_SECONDS),
            "RLOPS_SERVING_EPISODE_FLUSH_SECONDS": str(FLUSH_SECONDS),
            "RLOPS_SERVING_API_KEYS": self.key_list(),
            "RLOPS_SERVING_TICKET_SECRET": self.ticket_secret,
        }
