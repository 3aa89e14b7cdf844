"""The canary over real HTTP: a share of new episodes goes to `challenger`, every episode
stays on the version it started on (its ticket says which), a flood of new episodes moves no
open one, and without a canary nothing of the challenger loads."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from rlops_serving.canary import RECENT_VERSIONS, canary_share
from rlops_serving.settings import ServingSettings
from tests.serving.conftest import AUTH, MODEL, RunningServer, running_server, settings, wait_for
from tests.serving.policies import register_broken_version, register_policy

OBS = [0.5, -0.3, 0.8]
FRACTION = 0.2
EPISODES = 2000
TOLERANCE = 0.04
"""On the challenger's share of EPISODES new episodes: the binomial sd is
sqrt(0.2 * 0.8 / 2000) ≈ 0.009, so 0.04 is more than 4 sd (the server draws the ids)."""


@pytest.fixture
def challenger(champion: str) -> str:
    """Version 2 of MODEL under `challenger`, beside the champion (version 1)."""
    version = register_policy(MODEL, reward=-900.0, seed=2)
    ModelRegistry(MODEL).set_alias(CHALLENGER, version)
    return version


@pytest.fixture
def canary(challenger: str) -> Iterator[RunningServer]:
    with running_server(settings(canary_fraction=FRACTION)) as running:
        yield running


Answer = tuple[str, str]
"""(model_version, model_alias) of an answer."""


def act(http: httpx.Client, ticket: str | None = None) -> Answer:
    """The answer to one observation outside any episode, or as the next step of `ticket`'s."""
    body = {"observation": OBS} | ({"ticket": ticket} if ticket else {})
    answer = http.post("/v1/act", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"], answer.json()["model_alias"]


def start(http: httpx.Client) -> tuple[str, Answer]:
    """A new episode's first step: (its ticket, the answer)."""
    answer = http.post("/v1/act", json={"observation": OBS, "start_episode": True})
    assert answer.status_code == 200, answer.text
    found = answer.json()
    return found["ticket"], (found["model_version"], found["model_alias"])


def client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=10)


def infos(server: RunningServer) -> dict[str, str]:
    """{alias: version} from `rlops_serving_model_info`."""
    return {
        dict(labels)["alias"]: dict(labels)["version"]
        for (name, labels), _ in server.scrape().items()
        if name == "rlops_serving_model_info"
    }


def test_a_share_of_new_episodes_goes_to_the_challenger(canary, champion, challenger) -> None:
    assert infos(canary) == {CHAMPION: champion, CHALLENGER: challenger}
    with client(canary) as http:
        answers = [start(http)[1] for _ in range(EPISODES)]
        outside = {act(http) for _ in range(50)}

    assert set(answers) == {(champion, CHAMPION), (challenger, CHALLENGER)}
    to_challenger = sum(alias == CHALLENGER for _, alias in answers)
    assert abs(to_challenger / EPISODES - FRACTION) <= TOLERANCE
    assert outside == {(champion, CHAMPION)}  # outside an episode: always the champion

    metrics = canary.scrape()
    for version, alias, count in [
        (challenger, CHALLENGER, to_challenger),
        (champion, CHAMPION, EPISODES - to_challenger + 50),
    ]:
        labels = frozenset({("version", version), ("alias", alias)})
        assert metrics[("rlops_serving_observations_total", labels)] == count
        answered = frozenset({("path", "/v1/act"), ("status", "200"), ("version", version)})
        assert metrics[("rlops_serving_requests_total", answered)] == count


def test_the_side_follows_the_servers_episode_id() -> None:
    """The side is a stable hash of the episode id the server drew: the same in every process."""
    assert canary_share("0" * 24) == canary_share("0" * 24)
    shares = [canary_share(f"{i:024x}") for i in range(2000)]
    assert abs(sum(share < FRACTION for share in shares) / 2000 - FRACTION) <= TOLERANCE


def test_every_step_of_an_episode_gets_one_version(canary, champion, challenger) -> None:
    with client(canary) as http:
        episodes = [start(http) for _ in range(60)]
        later = [[act(http, ticket) for _ in range(2)] for ticket, _ in episodes]
    for (_, first), steps in zip(episodes, later, strict=True):
        assert steps == [first, first]
    # Both versions answer some of these episodes, or the test could not fail.
    assert {first for _, first in episodes} == {(champion, CHAMPION), (challenger, CHALLENGER)}


def test_open_episodes_keep_their_version_when_the_champion_moves(
    canary, champion, challenger
) -> None:
    """A flood of new episodes between two steps of open ones moves none of them: an episode's
    version is in its ticket, not in a table a flood could evict."""
    with client(canary) as http:
        started = [start(http) for _ in range(40)]
        assert {answer for _, answer in started} == {
            (champion, CHAMPION),
            (challenger, CHALLENGER),
        }
        for _ in range(500):
            start(http)

        third = register_policy(MODEL, reward=-800.0, seed=3)
        ModelRegistry(MODEL).crown(third)
        wait_for(lambda: act(http) == (third, CHAMPION), "the new champion served")

        assert [act(http, ticket) for ticket, _ in started] == [a for _, a in started]
        new_episodes = {start(http)[1] for _ in range(40)}
    assert new_episodes == {(third, CHAMPION), (challenger, CHALLENGER)}
    assert infos(canary) == {CHAMPION: third, CHALLENGER: challenger}


def test_without_a_canary_nothing_of_the_challenger_is_served(challenger, champion) -> None:
    with running_server(settings(canary_fraction=0.0)) as server, client(server) as http:
        answers = {start(http)[1] for _ in range(200)}
        assert answers == {(champion, CHAMPION)}
        assert infos(server) == {CHAMPION: champion}
        loads = server.scrape()[
            ("rlops_serving_model_loads_total", frozenset({("outcome", "success")}))
        ]
        assert loads == 1  # the challenger was never loaded


def test_a_challenger_that_does_not_load_leaves_the_champion_serving(champion, tmp_path) -> None:
    ModelRegistry(MODEL).set_alias(CHALLENGER, register_broken_version(MODEL, tmp_path))
    with running_server(settings(canary_fraction=1.0)) as server, client(server) as http:
        assert http.get("/ready").status_code == 200
        assert {start(http)[1] for _ in range(20)} == {(champion, CHAMPION)}
        failures = ("rlops_serving_model_loads_total", frozenset({("outcome", "failure")}))
        assert server.scrape()[failures] >= 1
        assert infos(server) == {CHAMPION: champion}


def test_an_episode_whose_version_is_gone_is_told_to_start_again(champion) -> None:
    """Only the last RECENT_VERSIONS versions stay loaded for open episodes; a ticket of an
    older one gets a 409 that says to start a new episode, never another version's action."""
    with running_server(settings()) as server, client(server) as http:
        ticket, first = start(http)
        assert first == (champion, CHAMPION)
        for seed in range(10, 10 + RECENT_VERSIONS):
            newer = register_policy(MODEL, reward=-900.0, seed=seed)
            ModelRegistry(MODEL).crown(newer)
            wait_for(lambda v=newer: act(http) == (v, CHAMPION), f"v{newer} served")
            start(http)  # an episode on it keeps it among the recent versions
        gone = http.post("/v1/act", json={"observation": OBS, "ticket": ticket})
        assert gone.status_code == 409
        (error,) = gone.json()["detail"]
        assert error["loc"] == ["body", "ticket"]
        assert f"version {champion}" in error["msg"]
        assert "start a new episode" in error["msg"]


def test_a_canary_of_the_served_alias_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="canary_alias must differ from model_alias"):
        ServingSettings(canary_fraction=0.1, canary_alias=CHAMPION)
    assert ServingSettings(canary_fraction=0.0, canary_alias=CHAMPION).canary_fraction == 0.0
