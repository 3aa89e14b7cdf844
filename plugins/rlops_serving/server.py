"""The process: uvicorn serving the app, set up by `RLOPS_SERVING_*` (`python -m rlops_serving`).

One worker with one torch thread; scale out with replicas. uvloop and httptools (pinned in
requirements.txt) halve the per-request cost of asyncio + h11 here. Access logging is off: it
costs 10-15% of the throughput, and `/metrics` counts every request anyway.

Connection limits: at most `max_concurrency` connections and requests at once (uvicorn answers
503 beyond), and a connection whose request headers are not complete `header_timeout_seconds`
after it opened or finished its previous response is closed (uvicorn itself only times out idle
keep-alive connections, so a client sending headers byte by byte would hold one for ever).
"""

from __future__ import annotations

import asyncio
import logging
import sys

import torch
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from rlops_serving.app import create_app
from rlops_serving.auth import ApiKeyError
from rlops_serving.settings import ServingSettings


def header_deadline_protocol(timeout: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing a connection whose headers are late."""

    class HeaderDeadline(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.cycle.response_complete and not self.transport.is_closing():
                self._arm()  # idle now: the next request's headers are due in time too

    return HeaderDeadline


def build_server(settings: ServingSettings) -> uvicorn.Server:
    """uvicorn as production runs it; `run()` it, or `run(sockets=[...])` on a bound socket."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws="none",
        lifespan="on",
        http=header_deadline_protocol(settings.header_timeout_seconds),
        limit_concurrency=settings.max_concurrency,
    )
    return uvicorn.Server(config)


def main() -> None:
    settings = ServingSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(settings.torch_threads)
    try:
        server = build_server(settings)
    except ApiKeyError as exc:
        print(f"rlops_serving: {exc}", file=sys.stderr)
        sys.exit(2)
    server.run()
