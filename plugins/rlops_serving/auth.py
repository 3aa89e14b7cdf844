"""Who may call the policy server: API keys with scopes, checked on every request but `/health`.

Follows TorchServe's token authorization (on by default, bearer tokens, separate keys for
separate uses) rather than leaving it to a mesh as KServe does: a policy server that moves
aliases through the evidence it collects must know who reports it.

A key is a bearer token (`rlops_<id>_<secret>`); the server stores only its SHA-256, with an id
and the scopes it grants:

- `act`: `POST /v1/act` (actions, and the episode tickets that let a client report);
- `report`: `POST /v1/episodes` (episode returns that reach the drift guard and the canary);
- `metrics`: `GET /metrics` and `GET /ready` (operations).

Keys come from a JSON file (`RLOPS_SERVING_API_KEYS_FILE`) or the same JSON in
`RLOPS_SERVING_API_KEYS`: `[{"id": "app-1", "sha256": "<hex>", "scopes": ["act", "report"]}]`.
Several keys may grant the same scopes, so a key rotates without downtime: add the new one,
move the clients, remove the old one, restart. `python -m rlops_serving.auth new --id app-1
--scope act --scope report` mints one, prints the token once and the line for the file.

No token is a 401, a token the server does not know a 401, a known key without the route's
scope a 403 naming the scope; the body is never read before that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_PREFIX = "rlops_"
KEY_SCOPE_KEY = "rlops.api_key"
"""ASGI scope key where the middleware puts the `ApiKey` that authenticated the request."""
KeyId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class KeyScope(StrEnum):
    ACT = "act"
    REPORT = "report"
    METRICS = "metrics"


class ApiKey(BaseModel):
    """One key as the server stores it: never the token itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: KeyId
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    scopes: Annotated[frozenset[KeyScope], Field(min_length=1)]


class ApiKeyError(ValueError):
    """Keys that cannot be used; the message names the entry and field."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """The keys the server accepts, by the digest of their token."""

    by_digest: Mapping[str, ApiKey]

    @classmethod
    def parse(cls, raw: str, source: str) -> KeyRing:
        """Keys from their JSON list; a bad entry is refused naming its place and field."""
        try:
            keys = TypeAdapter(list[ApiKey]).validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"[{']['.join(str(p) for p in error['loc'])}]: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise ApiKeyError(f"API keys in {source}: {problems}") from None
        for field in ("id", "sha256"):
            values = [getattr(key, field) for key in keys]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ApiKeyError(f"API keys in {source}: {field} given twice: {repeated}")
        return cls({key.sha256: key for key in keys})

    def __len__(self) -> int:
        return len(self.by_digest)

    def find(self, token: str) -> ApiKey | None:
        return self.by_digest.get(token_digest(token))


def _refusal(status: int, detail: str, scope_needed: KeyScope) -> JSONResponse:
    challenge = f'Bearer realm="rlops", scope="{scope_needed}"'
    if status == 401:
        challenge += ', error="invalid_token"'
    else:
        challenge += ', error="insufficient_scope"'
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={"WWW-Authenticate": challenge}
    )


class RequireKey:
    """ASGI middleware: each route in `scopes` needs a key granting its scope; others (and
    `/health`, left out of `scopes`) pass. Unknown paths pass to the router's 404."""

    def __init__(self, app: ASGIApp, keys: KeyRing, scopes: Mapping[str, KeyScope]) -> None:
        self.app = app
        self.keys = keys
        self.scopes = dict(scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needed = self.scopes.get(scope["path"]) if scope["type"] == "http" else None
        if needed is None:
            await self.app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"
        header = _authorization(scope["headers"])
        if header is None:
            detail = (
                f"no API key: {route} needs a key with scope '{needed}' "
                "(header Authorization: Bearer <token>)"
            )
            await _refusal(401, detail, needed)(scope, receive, send)
            return
        key = self.keys.find(header)
        if key is None:
            detail = f"unknown or revoked API key: {route} needs a key with scope '{needed}'"
            await _refusal(401, detail, needed)(scope, receive, send)
            return
        if needed not in key.scopes:
            has = ", ".join(sorted(key.scopes))
            detail = f"key {key.id!r} lacks scope '{needed}', needed for {route}; it has: {has}"
            await _refusal(403, detail, needed)(scope, receive, send)
            return
        scope[KEY_SCOPE_KEY] = key
        await self.app(scope, receive, send)


def _authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of the request, or None without a well-formed one."""
    for name, value in headers:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if kind.lower() == "bearer" and token else None
    return None


def new_token(key_id: str) -> str:
    return f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def main(argv: list[str] | None = None) -> int:
    """`python -m rlops_serving.auth new --id ID --scope act ...`: mint a key."""
    parser = argparse.ArgumentParser(prog="python -m rlops_serving.auth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="mint a key: the token once, and its entry")
    new.add_argument("--id", required=True, help="a name for the key (letters, digits, ._-)")
    new.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in KeyScope],
        required=True,
        help="a scope the key grants (repeat for several)",
    )
    args = parser.parse_args(argv)
    try:
        TypeAdapter(KeyId).validate_python(args.id)
    except ValidationError:
        parser.error(f"--id {args.id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    token = new_token(args.id)
    entry = {"id": args.id, "sha256": token_digest(token), "scopes": sorted(set(args.scope))}
    print(f"token (shown once; give it to the client): {token}")
    print(f"entry for RLOPS_SERVING_API_KEYS_FILE's list: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
