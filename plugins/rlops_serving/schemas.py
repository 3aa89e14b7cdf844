"""The request bodies of `POST /v1/act` and `POST /v1/episodes`, and the checks that make a
bad one a 422.

Numbers are strict (no "1.5" strings, no booleans), finite (JSON's NaN and Infinity, and
1e999, are refused) and within float32 (the model computes in float32: 1e308 would become
infinity); unknown fields are refused. Pydantic reports each problem with its place
in the body, e.g. `["observations", 3, 1]`, so every 422 names the field. The limits that
depend on the server (batch size) and on the served model (values per observation) are checked
by `batch_errors`, in the same shape.

The act response is `{"action": [...]}` for `observation`, `{"actions": [[...], ...]}` for
`observations`, plus `model_name`, `model_version` (the version that computed them) and
`model_alias` (the alias it was chosen through). A request with `start_episode` opens an
episode and its answer carries a `ticket`; each later step of that episode sends the latest
ticket (and gets the next), which keeps every step on one version and is what a report of the
episode must carry (tickets.py). Without either, a request goes to the champion.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, StrictBool, model_validator

from rlops_serving.tickets import TICKET_CHARS

FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: observations beyond it cannot reach the model as numbers."""
Number = Annotated[float, Strict(), AllowInfNan(False), Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
Observation = Annotated[list[Number], Field(min_length=1)]
TicketText = Annotated[
    str, Field(min_length=TICKET_CHARS, max_length=TICKET_CHARS, pattern=r"^[A-Za-z0-9_-]+$")
]
"""An episode ticket as the server issued it (base64url)."""
MAX_EPISODE_LENGTH = 10_000_000


class ActRequest(BaseModel):
    """Exactly one of `observation` (one) or `observations` (a batch); an episode's step (one
    observation) may start an episode or continue one with its ticket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    observation: Observation | None = Field(None, description="One observation.")
    observations: Annotated[list[Observation], Field(min_length=1)] | None = Field(
        None, description="A batch of observations (up to the server's max_batch)."
    )
    start_episode: StrictBool = Field(
        False, description="Open an episode: the answer carries its first ticket."
    )
    ticket: TicketText | None = Field(
        None, description="The latest ticket of the episode this step belongs to."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ActRequest:
        if (self.observation is None) == (self.observations is None):
            raise ValueError("give exactly one of `observation` or `observations`")
        if self.start_episode and self.ticket is not None:
            raise ValueError(
                "give `start_episode` to open an episode or `ticket` to go on, not both"
            )
        if self.observations is not None and (self.start_episode or self.ticket is not None):
            raise ValueError("an episode's step is one `observation`, not a batch")
        return self

    def rows(self) -> list[list[float]]:
        """The observations as a batch (a single one is a batch of one)."""
        return [self.observation] if self.observation is not None else self.observations


class EpisodeReportRequest(BaseModel):
    """A finished episode: its ticket (the latest), its return, how many steps it took."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket: TicketText
    episode_return: Number = Field(alias="return")
    length: Annotated[int, Strict(), Field(ge=1, le=MAX_EPISODE_LENGTH)]


def batch_errors(request: ActRequest, obs_dim: int, max_batch: int) -> list[dict[str, Any]]:
    """Errors, in pydantic's shape, for a batch the served model cannot take (none if it can)."""
    if request.observation is not None:
        located = [(("observation",), request.observation)]
    elif len(request.observations) > max_batch:
        return [field_error(("observations",), f"at most {max_batch} observations per request")]
    else:
        located = [(("observations", i), row) for i, row in enumerate(request.observations)]
    expected = f"expected {obs_dim} values (the served model's obs_dim)"
    return [
        field_error(loc, f"{expected}, got {len(row)}")
        for loc, row in located
        if len(row) != obs_dim
    ]


def non_finite_action_errors(
    request: ActRequest, actions: list[list[float]]
) -> list[dict[str, Any]]:
    """Errors for observations whose action came out infinite or NaN (overflow in the network).

    Valid float32 inputs can still overflow inside the model (e.g. 1e38 in every field); such
    an answer cannot be JSON, and is the client's input, so it is a 422 naming the row.
    """
    field: tuple[str, ...] = ("observation",) if request.observation is not None else ()
    return [
        field_error(field or ("observations", i), "the policy's action for it is not finite")
        for i, action in enumerate(actions)
        if not all(math.isfinite(value) for value in action)
    ]


def field_error(loc: tuple[str | int, ...], message: str) -> dict[str, Any]:
    """One error in pydantic's shape, `loc` relative to the body."""
    return {"type": "value_error", "loc": loc, "msg": message}
