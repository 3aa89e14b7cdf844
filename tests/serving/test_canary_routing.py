"""The canary over real HTTP: a share of new episodes goes to `challenger`, every episode
stays on the version it started on, and without a canary nothing of the challenger loads."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError

from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from rlops_serving.canary import canary_share
from rlops_serving.settings import ServingSettings
from tests.serving.conftest import MODEL, RunningServer, running_server, settings, wait_for
from tests.serving.policies import register_broken_version, register_policy

OBS = [0.5, -0.3, 0.8]
FRACTION = 0.2
EPISODES = 2000
TOLERANCE = 0.03
"""On the challenger's share of EPISODES ids: the binomial sd is sqrt(0.2 * 0.8 / 2000) ≈
0.009, so 0.03 is more than 3 sd. The ids are fixed, so the share is too (0.1795)."""


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


def act(http: httpx.Client, episode_id: str | None = None) -> tuple[str, str]:
    """(model_version, model_alias) of the answer to one observation."""
    body = {"observation": OBS} | ({"episode_id": episode_id} if episode_id else {})
    answer = http.post("/v1/act", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"], answer.json()["model_alias"]


def infos(server: RunningServer) -> dict[str, str]:
    """{alias: version} from `rlops_serving_model_info`."""
    return {
        dict(labels)["alias"]: dict(labels)["version"]
        for (name, labels), _ in server.scrape().items()
        if name == "rlops_serving_model_info"
    }


def test_a_share_of_new_episodes_goes_to_the_challenger(canary, champion, challenger) -> None:
    assert infos(canary) == {CHAMPION: champion, CHALLENGER: challenger}
    ids = [f"episode-{i}" for i in range(EPISODES)]
    with httpx.Client(base_url=canary.url, timeout=10) as http:
        answers = {episode_id: act(http, episode_id) for episode_id in ids}
        without_id = {act(http) for _ in range(50)}

    assert set(answers.values()) == {(champion, CHAMPION), (challenger, CHALLENGER)}
    to_challenger = {
        episode_id for episode_id, (_, alias) in answers.items() if alias == CHALLENGER
    }
    assert abs(len(to_challenger) / EPISODES - FRACTION) <= TOLERANCE
    assert to_challenger == {i for i in ids if canary_share(i) < FRACTION}  # the stable hash
    assert without_id == {(champion, CHAMPION)}

    metrics = canary.scrape()
    for version, alias, count in [
        (challenger, CHALLENGER, len(to_challenger)),
        (champion, CHAMPION, EPISODES - len(to_challenger) + 50),
    ]:
        labels = frozenset({("version", version), ("alias", alias)})
        assert metrics[("rlops_serving_observations_total", labels)] == count
        answered = frozenset({("path", "/v1/act"), ("status", "200"), ("version", version)})
        assert metrics[("rlops_serving_requests_total", answered)] == count


def test_every_step_of_an_episode_gets_one_version(canary, champion, challenger) -> None:
    ids = [f"sticky-{i}" for i in range(60)]
    with httpx.Client(base_url=canary.url, timeout=10) as http:
        steps = [(episode_id, act(http, episode_id)) for _ in range(3) for episode_id in ids]
    versions = {
        episode_id: {answer for i, answer in steps if i == episode_id} for episode_id in ids
    }
    assert all(len(answers) == 1 for answers in versions.values()), versions
    # Both versions answer some of these episodes, or the test could not fail.
    assert {answer for (answer,) in versions.values()} == {
        (champion, CHAMPION),
        (challenger, CHALLENGER),
    }


def test_open_episodes_keep_their_version_when_the_champion_moves(
    canary, champion, challenger
) -> None:
    ids = [f"open-{i}" for i in range(40)]
    with httpx.Client(base_url=canary.url, timeout=10) as http:
        started = {episode_id: act(http, episode_id) for episode_id in ids}
        assert set(started.values()) == {(champion, CHAMPION), (challenger, CHALLENGER)}

        third = register_policy(MODEL, reward=-800.0, seed=3)
        ModelRegistry(MODEL).crown(third)
        wait_for(lambda: act(http) == (third, CHAMPION), "the new champion served")

        assert {episode_id: act(http, episode_id) for episode_id in ids} == started
        new_episodes = {act(http, f"new-{i}") for i in range(40)}
    assert new_episodes == {(third, CHAMPION), (challenger, CHALLENGER)}
    assert infos(canary) == {CHAMPION: third, CHALLENGER: challenger}


def test_without_a_canary_nothing_of_the_challenger_is_served(challenger, champion) -> None:
    with (
        running_server(settings(canary_fraction=0.0)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        answers = {act(http, f"episode-{i}") for i in range(200)}
        assert answers == {(champion, CHAMPION)}
        assert infos(server) == {CHAMPION: champion}
        loads = server.scrape()[
            ("rlops_serving_model_loads_total", frozenset({("outcome", "success")}))
        ]
        assert loads == 1  # the challenger was never loaded


def test_a_challenger_that_does_not_load_leaves_the_champion_serving(champion, tmp_path) -> None:
    ModelRegistry(MODEL).set_alias(CHALLENGER, register_broken_version(MODEL, tmp_path))
    with (
        running_server(settings(canary_fraction=1.0)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        assert http.get("/ready").status_code == 200
        assert {act(http, f"episode-{i}") for i in range(20)} == {(champion, CHAMPION)}
        failures = ("rlops_serving_model_loads_total", frozenset({("outcome", "failure")}))
        assert server.scrape()[failures] >= 1
        assert infos(server) == {CHAMPION: champion}


def test_forgotten_episodes_are_the_least_recently_used(champion) -> None:
    """With room for two open episodes, a third one makes the server forget the episode
    that went longest without a request; that one starts over on the new champion."""
    with (
        running_server(settings(max_open_episodes=2)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        for episode_id in ("a", "b", "a", "c"):  # "b" is now the least recently used
            assert act(http, episode_id) == (champion, CHAMPION)
        new = register_policy(MODEL, reward=-900.0, seed=2)
        ModelRegistry(MODEL).crown(new)
        wait_for(lambda: act(http) == (new, CHAMPION), "the new champion served")
        assert act(http, "a") == (champion, CHAMPION)
        assert act(http, "c") == (champion, CHAMPION)
        assert act(http, "b") == (new, CHAMPION)


def test_a_canary_of_the_served_alias_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="canary_alias must differ from model_alias"):
        ServingSettings(canary_fraction=0.1, canary_alias=CHAMPION)
    assert ServingSettings(canary_fraction=0.0, canary_alias=CHAMPION).canary_fraction == 0.0
