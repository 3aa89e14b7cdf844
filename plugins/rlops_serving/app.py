"""The HTTP API: `POST /v1/act`, `POST /v1/episodes`, `GET /health`, `/ready`, `/metrics`.

Plain Starlette: the handler parses the body straight from bytes with pydantic's JSON parser
and calls the TorchScript actor inline in the `async` handler (a batch-1 forward pass takes
10-25 µs, less than a hop to a thread pool). Measured in process (no network), a batch-1
request costs about 40 µs here, against 75-110 µs for the same handler as a FastAPI endpoint
with a pydantic body parameter. A batch is one forward pass. Bad input is a 422 naming the
field, never a 500.

Every route but `/health` needs an API key with the route's scope (auth.py), checked before
the body is read. Which version acts is canary.py's choice; episode tickets are tickets.py's,
episode reports episodes.py's. The lifespan loads every followed alias at start (the server is
ready once the champion is), then keeps following them and flushing the episode reports in
background tasks.

Limits, each refusing before the work it would cost: a body of undeclared or excessive size is
refused unread (411/413), an act body larger than `max_batch` observations of the served size
can be is refused unread (413), a body slower than `body_timeout_seconds` gets a 408, slow
headers and too many connections are the HTTP server's (server.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rlops_registry.registry import ModelRegistry
from rlops_registry.served_episodes import EpisodeLog
from rlops_serving.auth import KEY_SCOPE_KEY, ApiKey, KeyScope, RequireKey
from rlops_serving.canary import CanaryRouter
from rlops_serving.champion import ChampionWatcher
from rlops_serving.episodes import EpisodeIntake
from rlops_serving.metrics import VERSION_SCOPE_KEY, RequestMetrics, ServingMetrics
from rlops_serving.schemas import (
    ActRequest,
    EpisodeReportRequest,
    batch_errors,
    field_error,
    non_finite_action_errors,
)
from rlops_serving.settings import ServingSettings
from rlops_serving.tickets import TicketError, TicketSigner, new_episode

log = logging.getLogger(__name__)
Body = TypeVar("Body", bound=BaseModel)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OPEN_KEY = ApiKey(id="anyone", sha256="0" * 64, scopes=frozenset(KeyScope))
"""Who a request is when `require_api_keys` is off."""
BYTES_PER_VALUE = 40
"""Most bytes one observation value takes in a JSON body (a float32 printed in full, a comma,
spaces), used to refuse an oversized act body before reading it."""


class BodyLimit:
    """ASGI middleware: refuse a body of undeclared (411) or excessive (413) size unread.

    Without it a client could make the server buffer and parse any amount of JSON before the
    batch limit is ever checked. The HTTP server enforces the declared Content-Length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            length = dict(scope["headers"]).get(b"content-length", b"")
            if not length.isdigit():
                refusal = JSONResponse({"detail": "Content-Length required"}, status_code=411)
                await refusal(scope, receive, send)
                return
            if int(length) > self.max_bytes:
                detail = f"body of {int(length)} bytes; the limit is {self.max_bytes}"
                await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _is_json(content_type: str) -> bool:
    """application/json or any `+json` type, with or without parameters (charset)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def _parsed(request: Request, model: type[Body], timeout: float) -> Body | JSONResponse:
    """The request's JSON body as `model`, or the 408/415/422 that refuses it."""
    if not _is_json(request.headers.get("content-type", "")):
        detail = "the body must be JSON: send Content-Type: application/json"
        return JSONResponse({"detail": detail}, status_code=415)
    try:
        body = await asyncio.wait_for(request.body(), timeout)
    except TimeoutError:
        detail = f"the body did not arrive within {timeout:g} s"
        return JSONResponse({"detail": detail}, status_code=408, headers={"Connection": "close"})
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return _invalid(exc)


def _refused(errors: list[dict[str, Any]], status_code: int = 422) -> JSONResponse:
    """Errors in FastAPI's 422 shape: each error's `loc` starts with "body" and names the field."""
    detail = [{**error, "loc": ["body", *error["loc"]]} for error in errors]
    return JSONResponse({"detail": detail}, status_code=status_code)


def _invalid(exc: ValidationError) -> JSONResponse:
    # The bad value is not echoed back: NaN and infinities are not valid JSON.
    return _refused(exc.errors(include_url=False, include_context=False, include_input=False))


def _instance() -> str:
    """This server process, as its MLflow runs of served episodes name it."""
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{socket.gethostname()}:{os.getpid()}:{started}"


def create_app(settings: ServingSettings) -> Starlette:
    """The server for `settings.model_name@settings.model_alias` (MLflow from the environment),
    with a canary of `settings.canary_alias` when `settings.canary_fraction` > 0.

    Raises `ApiKeyError` when keys are required and none (or a bad one) is configured."""
    keys = settings.key_ring()
    metrics = ServingMetrics()
    registry = ModelRegistry(settings.model_name)
    champion = ChampionWatcher(registry, settings.model_alias, metrics, settings.runtime)
    canary = (
        ChampionWatcher(registry, settings.canary_alias, metrics, settings.runtime)
        if settings.canary_fraction > 0
        else None
    )
    router = CanaryRouter(champion, canary, settings.canary_fraction)
    signer = TicketSigner(settings.ticket_key(), settings.ticket_ttl_seconds)
    episode_log = EpisodeLog(settings.model_name, _instance(), settings.max_pending_episodes)
    metrics.episode_log(episode_log)
    episodes = EpisodeIntake(episode_log, router, signer, metrics, settings)
    loading = f"no version of {settings.model_name}@{settings.model_alias} loaded yet"
    body_timeout = settings.body_timeout_seconds

    def not_loaded() -> str:
        return champion.unset or loading

    def caller(request: Request) -> ApiKey:
        return request.scope.get(KEY_SCOPE_KEY, OPEN_KEY)

    def oversized_batch(request: Request, obs_dim: int) -> JSONResponse | None:
        """A 413 for a body longer than `max_batch` observations of `obs_dim` can be, unread."""
        most = 256 + settings.max_batch * (obs_dim * BYTES_PER_VALUE + 8)
        length = int(request.headers.get("content-length", "0"))
        if length <= most:
            return None
        detail = (
            f"body of {length} bytes; {settings.max_batch} observations (max_batch) of "
            f"{obs_dim} values take at most {most}"
        )
        return JSONResponse({"detail": detail}, status_code=413)

    async def act(request: Request) -> JSONResponse:
        """Deterministic actions for one observation or a batch, and the version that acted;
        an episode's step also gets its next ticket."""
        champion_now = router.route()
        if champion_now is None:
            return JSONResponse({"detail": not_loaded()}, status_code=503)
        refusal = oversized_batch(request, champion_now.policy.obs_dim)
        if refusal is not None:
            return refusal
        body = await _parsed(request, ActRequest, body_timeout)
        if isinstance(body, JSONResponse):
            return body
        key_id = caller(request).id
        ticket = None
        if body.ticket is not None:
            try:
                ticket = signer.advanced(signer.decode(body.ticket, key_id))
            except TicketError as exc:
                return _refused([field_error(("ticket",), f"ticket {exc}")])
            served = router.resume(str(ticket.version))
            if served is None:
                message = (
                    f"version {ticket.version}, which serves this episode, is no longer loaded "
                    "here: start a new episode"
                )
                return _refused([field_error(("ticket",), message)], status_code=409)
        elif body.start_episode:
            episode = new_episode()
            served = router.start(episode.hex()) or champion_now
            ticket = signer.start(served.policy.version, key_id, episode)
        else:
            served = champion_now  # the whole request is served by this version
        policy = served.policy
        request.scope[VERSION_SCOPE_KEY] = policy.version
        errors = batch_errors(body, policy.obs_dim, settings.max_batch)
        if errors:
            return _refused(errors)
        rows = body.rows()
        actions = policy.act(rows)
        errors = non_finite_action_errors(body, actions)
        if errors:
            return _refused(errors)
        metrics.batch_size.observe(len(rows))
        served.observations.inc(len(rows))
        answer = {"action": actions[0]} if body.observation is not None else {"actions": actions}
        answer |= {"model_name": policy.model_name, "model_version": policy.version}
        answer["model_alias"] = served.alias
        if ticket is not None:
            answer["ticket"] = signer.encode(ticket)
        return JSONResponse(answer)

    async def report_episode(request: Request) -> JSONResponse:
        """Take a client's finished episode (202), or refuse it naming the field."""
        if not settings.require_api_keys:
            detail = (
                "episode reports need an API key to bind them to: this server runs with "
                "require_api_keys off, so it takes none"
            )
            return JSONResponse({"detail": detail}, status_code=403)
        body = await _parsed(request, EpisodeReportRequest, body_timeout)
        if isinstance(body, JSONResponse):
            return body
        version, refusal = episodes.submit(body, caller(request).id)
        if refusal is not None:
            response = _refused(refusal.errors, refusal.status)
            if refusal.retry_after is not None:
                response.headers["Retry-After"] = str(max(1, math.ceil(refusal.retry_after)))
            return response
        request.scope[VERSION_SCOPE_KEY] = version
        answer = {"accepted": True, "model_name": settings.model_name, "model_version": version}
        return JSONResponse(answer, status_code=202)

    async def health(_: Request) -> JSONResponse:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    async def ready(_: Request) -> JSONResponse:
        """Readiness: a model version is loaded and being served."""
        served = champion.served
        if served is None:
            return JSONResponse({"status": "loading", "detail": not_loaded()}, status_code=503)
        policy = served.policy
        return JSONResponse(
            {"status": "ready", "model_name": policy.model_name, "model_version": policy.version}
        )

    async def prometheus_metrics(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Registry down or no good version yet: start unready (no champion) or without a
        # canary, and keep polling. The aliases load side by side, each failing on its own.
        await asyncio.gather(*(watcher.refresh_logged() for watcher in router.watchers))
        gc.collect()  # then freeze what survives: start-up garbage never reaches the tail
        gc.freeze()
        background = [
            *(asyncio.create_task(w.follow(settings.poll_seconds)) for w in router.watchers),
            asyncio.create_task(episodes.flush_every(settings.episode_flush_seconds)),
        ]
        yield
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await episodes.flush()  # what was accepted since the last flush

    routes = [
        Route("/v1/act", act, methods=["POST"]),
        Route("/v1/episodes", report_episode, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus_metrics, methods=["GET"]),
    ]
    scopes = {
        "/v1/act": KeyScope.ACT,
        "/v1/episodes": KeyScope.REPORT,
        "/ready": KeyScope.METRICS,
        "/metrics": KeyScope.METRICS,
    }
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.metrics = metrics
    app.state.router = router
    # Outermost last: every response is counted, keys are checked before any body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.require_api_keys:
        app.add_middleware(RequireKey, keys=keys, scopes=scopes)
    app.add_middleware(RequestMetrics, metrics=metrics, paths={route.path for route in routes})
    return app
