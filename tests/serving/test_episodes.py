"""`POST /v1/episodes` over real HTTP: a report is taken only for an episode this server served,
within what the env can give, once, at the key's rate; accepted reports reach MLflow and
`/metrics`; refused ones leave no trace anywhere."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from mlflow import MlflowClient

from rlops_registry.registry import ModelRegistry
from rlops_registry.served_episodes import DEFAULT_SERVED_EXPERIMENT, now_ms, served_returns
from rlops_serving.tickets import TicketSigner, new_episode
from tests.serving.conftest import (
    AUTH,
    KEYS,
    MODEL,
    RunningServer,
    running_server,
    settings,
    wait_for,
)
from tests.serving.policies import register_policy

OBS = [0.5, -0.3, 0.8]
FLUSH_SECONDS = 0.2
SECRET = secrets.token_urlsafe(32)
"""The servers' ticket secret here, so a test can sign what only a server could."""
PENDULUM_STEP = (-17.0, 0.0)
"""Pendulum's reward per step lies in [-16.27, 0]; gymnasium declares no reward_range."""


def episode_settings(**overrides: object) -> object:
    defaults = {
        "episode_flush_seconds": FLUSH_SECONDS,
        "ticket_secret": SECRET,
        "step_reward_min": PENDULUM_STEP[0],
        "step_reward_max": PENDULUM_STEP[1],
    }
    return settings(**(defaults | overrides))


@pytest.fixture
def server(champion: str) -> Iterator[RunningServer]:
    """The champion's server, writing accepted reports to MLflow every FLUSH_SECONDS."""
    with running_server(episode_settings()) as running:
        yield running


def report(url: str, body: object, headers: dict[str, str] = AUTH) -> httpx.Response:
    """A report; a str body is sent as is (raw JSON), anything else as JSON."""
    content = body if isinstance(body, str) else json.dumps(body)
    headers = headers | {"content-type": "application/json"}
    return httpx.post(f"{url}/v1/episodes", content=content, headers=headers, timeout=10)


def play(url: str, steps: int, headers: dict[str, str] = AUTH) -> tuple[str, str]:
    """Start an episode and step it `steps` times in all: (its latest ticket, its version)."""
    body: dict[str, object] = {"observation": OBS, "start_episode": True}
    for _ in range(steps):
        answer = httpx.post(f"{url}/v1/act", json=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        body = {"observation": OBS, "ticket": answer.json()["ticket"]}
    return answer.json()["ticket"], answer.json()["model_version"]


def summary(server: RunningServer, name: str, version: str) -> tuple[float, float]:
    """(count, sum) of a per-version summary; (0, 0) when the version has no series."""
    metrics = server.scrape()
    labels = frozenset({("version", version)})
    return metrics.get((f"{name}_count", labels), 0.0), metrics.get((f"{name}_sum", labels), 0.0)


def test_an_accepted_report_reaches_mlflow_and_metrics(server, champion) -> None:
    since = now_ms()
    ticket, version = play(server.url, 5)
    answer = report(server.url, {"ticket": ticket, "return": -52.5, "length": 5})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": True, "model_name": MODEL, "model_version": champion}
    assert version == champion
    wait_for(lambda: served_returns(MODEL, champion, since) == [-52.5], "the report in MLflow")
    assert summary(server, "rlops_serving_episode_return", champion) == (1, -52.5)
    assert summary(server, "rlops_serving_episode_length", champion) == (1, 5)
    assert server.scrape()[("rlops_serving_episode_reports_pending", frozenset())] == 0


def forged(text: str) -> str:
    """`text` with one character changed, still base64url of the right length."""
    return text[:-3] + ("A" if text[-3] != "A" else "B") + text[-2:]


def test_a_report_the_server_cannot_vouch_for_is_refused_naming_why(
    server, champion, subtests
) -> None:
    """Every attack on the evidence, each a 4xx naming the field, and nothing recorded."""
    ticket, _ = play(server.url, 3)
    other_key_ticket, _ = play(server.url, 3, KEYS["reporter"])
    expired = TicketSigner(SECRET.encode(), 3600, clock=lambda: time.time() - 7200)
    expired_ticket = expired.encode(expired.start(champion, "tester", new_episode()))
    other_server = TicketSigner(secrets.token_bytes(32), 3600)
    foreign = other_server.encode(other_server.start(champion, "tester", new_episode()))
    attacks = [
        ("no ticket (id-less)", {"return": -1.0, "length": 3}, 422, "ticket", ""),
        (
            "old shape with a version",
            {"model_version": champion, "return": -1.0, "length": 3},
            422,
            "ticket",
            "",
        ),
        ("made-up ticket", {"ticket": "A" * 64, "return": -1.0, "length": 1}, 422, "ticket", "bad"),
        (
            "tampered ticket",
            {"ticket": forged(ticket), "return": -1.0, "length": 1},
            422,
            "ticket",
            "",
        ),
        (
            "another server's",
            {"ticket": foreign, "return": -1.0, "length": 1},
            422,
            "ticket",
            "bad",
        ),
        (
            "another key's",
            {"ticket": other_key_ticket, "return": -1.0, "length": 1},
            422,
            "ticket",
            "key",
        ),
        (
            "expired",
            {"ticket": expired_ticket, "return": -1.0, "length": 1},
            422,
            "ticket",
            "expired",
        ),
        ("longer than served", {"ticket": ticket, "return": -1.0, "length": 4}, 422, "length", "3"),
        ("-3.4e38", {"ticket": ticket, "return": -3.4e38, "length": 3}, 422, "return", "-51"),
        ("below the range", {"ticket": ticket, "return": -51.5, "length": 3}, 422, "return", ""),
        ("above the range", {"ticket": ticket, "return": 0.5, "length": 3}, 422, "return", ""),
        ("a string", {"ticket": ticket, "return": "-1", "length": 3}, 422, "return", ""),
    ]
    for name, body, status, loc, words in attacks:
        with subtests.test(attack=name):
            answer = report(server.url, body)
            assert answer.status_code == status, answer.text
            loc = ["body", loc]
            (message,) = [e["msg"] for e in answer.json()["detail"] if e["loc"] == loc]
            assert words in message
    assert summary(server, "rlops_serving_episode_return", champion) == (0, 0)
    # The honest report of that very episode still goes through: nothing above used it up.
    assert report(server.url, {"ticket": ticket, "return": -51.0, "length": 3}).status_code == 202
    since = now_ms() - 60_000
    wait_for(lambda: served_returns(MODEL, champion, since) == [-51.0], "only it in MLflow")


def test_an_episode_is_reported_once(server, champion) -> None:
    ticket, _ = play(server.url, 2)
    assert report(server.url, {"ticket": ticket, "return": -3.0, "length": 2}).status_code == 202
    again = report(server.url, {"ticket": ticket, "return": -4.0, "length": 2})
    assert again.status_code == 409
    (error,) = again.json()["detail"]
    assert error["loc"] == ["body", "ticket"]
    assert "reported already" in error["msg"]
    assert summary(server, "rlops_serving_episode_return", champion) == (1, -3.0)


def test_reports_need_the_report_scope(server, champion) -> None:
    ticket, _ = play(server.url, 1, KEYS["actor"])
    refused = report(server.url, {"ticket": ticket, "return": -1.0, "length": 1}, KEYS["actor"])
    assert refused.status_code == 403
    assert "lacks scope 'report'" in refused.json()["detail"]
    anonymous = report(server.url, {"ticket": ticket, "return": -1.0, "length": 1}, {})
    assert anonymous.status_code == 401
    assert summary(server, "rlops_serving_episode_return", champion) == (0, 0)


def test_a_key_over_its_report_rate_gets_a_429_and_others_do_not(champion) -> None:
    with running_server(episode_settings(report_rate_per_key=0.01, report_burst=2)) as server:
        tickets = [play(server.url, 1)[0] for _ in range(3)]
        answers = [report(server.url, {"ticket": t, "return": -1.0, "length": 1}) for t in tickets]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert int(answers[2].headers["retry-after"]) >= 1
        ticket, _ = play(server.url, 1, KEYS["reporter"])
        mine = report(server.url, {"ticket": ticket, "return": -1.0, "length": 1}, KEYS["reporter"])
        assert mine.status_code == 202
        assert summary(server, "rlops_serving_episode_return", champion) == (3, -3.0)


def test_a_full_queue_sheds_new_reports_and_keeps_the_accepted(champion) -> None:
    since = now_ms()
    with running_server(episode_settings(episode_flush_seconds=3600, max_pending_episodes=2)) as s:
        tickets = [play(s.url, 1)[0] for _ in range(3)]
        statuses = [
            report(s.url, {"ticket": t, "return": -float(i), "length": 1}).status_code
            for i, t in enumerate(tickets)
        ]
        assert statuses == [202, 202, 429]
        assert s.scrape()[("rlops_serving_episode_reports_pending", frozenset())] == 2
    assert served_returns(MODEL, champion, since) == [0.0, -1.0]  # written at shutdown


def test_an_episode_keeps_the_version_that_served_it(server, champion) -> None:
    """The champion moves while an episode runs: its steps stay on the old version, and its
    report counts for that version."""
    ticket, version = play(server.url, 2)
    new = register_policy(MODEL, reward=-900.0, seed=2)
    ModelRegistry(MODEL).crown(new)

    def served_version() -> str:
        body = {"observation": OBS}
        return httpx.post(f"{server.url}/v1/act", json=body, headers=AUTH, timeout=10).json()[
            "model_version"
        ]

    wait_for(lambda: served_version() == new, "the new champion served")
    step = httpx.post(
        f"{server.url}/v1/act", json={"observation": OBS, "ticket": ticket}, headers=AUTH
    )
    assert step.json()["model_version"] == version == champion  # still its version
    accepted = report(server.url, {"ticket": step.json()["ticket"], "return": -1.0, "length": 3})
    assert accepted.json()["model_version"] == champion
    assert summary(server, "rlops_serving_episode_return", new) == (0, 0)


def test_reports_wait_while_mlflow_refuses_them_and_are_written_after(
    server, champion, caplog
) -> None:
    """A real MLflow error: the served-episodes experiment is deleted, so no run can be made
    in it. The flush task logs it, keeps the report, and writes it once MLflow takes it."""
    client = MlflowClient()
    experiment = client.create_experiment(DEFAULT_SERVED_EXPERIMENT)
    client.delete_experiment(experiment)
    since = now_ms()
    caplog.set_level(logging.ERROR, logger="rlops_serving.episodes")
    ticket, _ = play(server.url, 4)
    assert report(server.url, {"ticket": ticket, "return": -8.0, "length": 4}).status_code == 202

    wait_for(
        lambda: any("could not write 1 episode reports" in r.message for r in caplog.records),
        "a failed flush",
    )
    pending = ("rlops_serving_episode_reports_pending", frozenset())
    assert server.scrape()[pending] == 1
    client.restore_experiment(experiment)
    wait_for(lambda: served_returns(MODEL, champion, since) == [-8.0], "the report in MLflow")
    assert server.scrape()[pending] == 0


def test_reports_are_written_at_shutdown(champion) -> None:
    since = now_ms()
    with running_server(episode_settings(episode_flush_seconds=3600)) as server:
        ticket, _ = play(server.url, 7)
        body = {"ticket": ticket, "return": -2.5, "length": 7}
        assert report(server.url, body).status_code == 202
        assert served_returns(MODEL, champion, since) == []  # not flushed yet
    assert served_returns(MODEL, champion, since) == [-2.5]


def test_a_server_without_keys_takes_no_reports(champion) -> None:
    with running_server(episode_settings(require_api_keys=False)) as server:
        step = httpx.post(
            f"{server.url}/v1/act", json={"observation": OBS, "start_episode": True}, timeout=10
        )
        assert step.status_code == 200  # open to anyone, as configured
        body = {"ticket": step.json()["ticket"], "return": -1.0, "length": 1}
        refused = report(server.url, body, {})
        assert refused.status_code == 403
        assert "require_api_keys off" in refused.json()["detail"]
