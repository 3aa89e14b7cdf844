"""The process: uvicorn serving the app, set up by `RLOPS_SERVING_*` (`python -m rlops_serving`).

One worker with one torch thread; scale out with replicas. uvloop and httptools (pinned in
requirements.txt) halve the per-request cost of asyncio + h11 here. Access logging is off: it
costs 10-15% of the throughput, and `/metrics` counts every request anyway.
"""

from __future__ import annotations

import logging

import torch
import uvicorn

from rlops_serving.app import create_app
from rlops_serving.settings import ServingSettings


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
    )
    return uvicorn.Server(config)


def main() -> None:
    settings = ServingSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(settings.torch_threads)
    build_server(settings).run()
