"""Hot reload: `champion` moves while 8 clients keep sending requests; none of them fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from rlops_registry.registry import ModelRegistry
from tests.serving.conftest import AUTH, MODEL
from tests.serving.policies import register_policy

CLIENTS = 8
OBS = [0.5, -0.3, 0.8]
BEFORE_SWAP = 300
"""Requests answered before the alias moves."""
AFTER_SWAP = 300
"""Requests the new version must answer before the load stops."""
MAX_REQUESTS_PER_CLIENT = 10_000
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Answer:
    status: int
    version: str | None
    action: tuple[float, ...] | None


async def _client(url: str, answers: list[Answer], stop: asyncio.Event) -> None:
    """Requests back to back (one in flight) until `stop`; transport errors propagate."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
        while not stop.is_set() and len(answers) < MAX_REQUESTS_PER_CLIENT:
            response = await client.post("/v1/act", json={"observation": OBS})
            body = response.json()
            action = body.get("action")
            answers.append(
                Answer(response.status_code, body.get("model_version"), action and tuple(action))
            )


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + MAX_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {MAX_SECONDS} s"
        await asyncio.sleep(0.01)


async def _move_champion_under_load(url: str, new_version: str) -> list[list[Answer]]:
    """Each client's answers, in order, around moving `champion` to `new_version`."""
    per_client: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    stop = asyncio.Event()
    clients = [asyncio.create_task(_client(url, answers, stop)) for answers in per_client]

    def answered(by: str | None = None) -> int:
        """Answers so far (by version `by`, if given)."""
        return sum(by is None or a.version == by for answers in per_client for a in answers)

    try:
        await _until(lambda: answered() >= BEFORE_SWAP, "requests before the swap")
        await asyncio.to_thread(ModelRegistry(MODEL).crown, new_version)
        await _until(lambda: answered(by=new_version) >= AFTER_SWAP, "answers of the new version")
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return per_client


def test_champion_moves_under_load_without_a_failed_request(server, champion) -> None:
    new = register_policy(MODEL, reward=-900.0, seed=2)
    per_client = asyncio.run(_move_champion_under_load(server.url, new))
    answers = [answer for answers in per_client for answer in answers]

    assert {a.status for a in answers} == {200}
    assert {a.version for a in answers} == {champion, new}
    for answers_of_one_client in per_client:  # once a client sees the new version, only it
        versions = [a.version for a in answers_of_one_client]
        first_new = versions.index(new) if new in versions else len(versions)
        assert set(versions[first_new:]) <= {new}
    old_actions = {a.action for a in answers if a.version == champion}
    new_actions = {a.action for a in answers if a.version == new}
    assert len(old_actions) == len(new_actions) == 1  # each version answers consistently...
    assert old_actions != new_actions  # ...and the swap really changed the model

    metrics = server.scrape()
    assert metrics[("rlops_serving_model_loads_total", frozenset({("outcome", "success")}))] == 2
    assert not any(name == "rlops_serving_errors_total" for name, _ in metrics)
