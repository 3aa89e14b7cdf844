"""`POST /v1/episodes` over real HTTP: accepted reports reach MLflow and `/metrics`; refused
ones leave no trace anywhere."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from mlflow import MlflowClient

from rlops_registry.registry import ModelRegistry
from rlops_registry.served_episodes import DEFAULT_SERVED_EXPERIMENT, now_ms, served_returns
from tests.serving.conftest import MODEL, RunningServer, running_server, settings, wait_for
from tests.serving.policies import register_policy

OBS = [0.5, -0.3, 0.8]
FLUSH_SECONDS = 0.2


@pytest.fixture
def server(champion: str) -> Iterator[RunningServer]:
    """The champion's server, writing accepted reports to MLflow every FLUSH_SECONDS."""
    with running_server(settings(episode_flush_seconds=FLUSH_SECONDS)) as running:
        yield running


def report(url: str, body: object) -> httpx.Response:
    """A report; a str body is sent as is (raw JSON), anything else as JSON."""
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"content-type": "application/json"}
    return httpx.post(f"{url}/v1/episodes", content=content, headers=headers, timeout=10)


def act(url: str, episode_id: str | None = None) -> httpx.Response:
    body = {"observation": OBS} | ({"episode_id": episode_id} if episode_id else {})
    return httpx.post(f"{url}/v1/act", json=body, timeout=10)


def summary(server: RunningServer, name: str, version: str) -> tuple[float, float]:
    """(count, sum) of a per-version summary; (0, 0) when the version has no series."""
    metrics = server.scrape()
    labels = frozenset({("version", version)})
    return metrics.get((f"{name}_count", labels), 0.0), metrics.get((f"{name}_sum", labels), 0.0)


def test_an_accepted_report_reaches_mlflow_and_metrics(server, champion) -> None:
    since = now_ms()
    answer = report(server.url, {"model_version": champion, "return": -152.5, "length": 200})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": True, "model_name": MODEL, "model_version": champion}

    wait_for(lambda: served_returns(MODEL, champion, since) == [-152.5], "the report in MLflow")
    assert summary(server, "rlops_serving_episode_return", champion) == (1, -152.5)
    assert summary(server, "rlops_serving_episode_length", champion) == (1, 200)
    metrics = server.scrape()
    assert metrics[("rlops_serving_episode_reports_pending", frozenset())] == 0
    assert metrics[("rlops_serving_episode_reports_dropped_total", frozenset())] == 0
    accepted = frozenset({("path", "/v1/episodes"), ("status", "202"), ("version", champion)})
    assert metrics[("rlops_serving_requests_total", accepted)] == 1


REFUSED = [
    ({"model_version": "7", "return": -1.0, "length": 3}, [["body", "model_version"]]),
    ('{"model_version": "1", "return": NaN, "length": 3}', [["body", "return"]]),
    ('{"model_version": "1", "return": -Infinity, "length": 3}', [["body", "return"]]),
    ({"model_version": "1", "return": 1e308, "length": 3}, [["body", "return"]]),  # not float32
    ({"model_version": "1", "return": "-1.0", "length": 3}, [["body", "return"]]),
    (
        {"model_version": "1", "episode_return": -1.0, "length": 3},
        [["body", "return"], ["body", "episode_return"]],  # the field is "return", only that
    ),
    ({"model_version": "1", "return": -1.0, "length": 0}, [["body", "length"]]),
    ({"model_version": "1", "return": -1.0, "length": "3"}, [["body", "length"]]),
    ({"model_version": "1", "return": -1.0, "length": 3.0}, [["body", "length"]]),
    ({"model_version": "1", "return": -1.0, "length": 10_000_001}, [["body", "length"]]),
    ({"model_version": 1, "return": -1.0, "length": 3}, [["body", "model_version"]]),
    ({"model_version": "01", "return": -1.0, "length": 3}, [["body", "model_version"]]),
    ({"return": -1.0, "length": 3}, [["body", "model_version"]]),
    (
        {"model_version": "1", "return": -1.0, "length": 3, "episode_id": ""},
        [["body", "episode_id"]],
    ),
    (
        {"model_version": "1", "return": -1.0, "length": 3, "episode_id": "a b"},
        [["body", "episode_id"]],
    ),
    ({"model_version": "1", "return": -1.0, "length": 3, "seed": 4}, [["body", "seed"]]),
]
"""(body, where its 422s must point): all for the served version 1 but for the first."""


def test_a_refused_report_is_a_422_naming_the_field_and_writes_nothing(
    server, champion, subtests
) -> None:
    assert champion == "1"
    since = now_ms()
    for body, locs in REFUSED:
        with subtests.test(body=str(body)[:70]):
            answer = report(server.url, body)
            assert answer.status_code == 422, answer.text
            assert [error["loc"] for error in answer.json()["detail"]] == locs
    unknown = report(server.url, {"model_version": "7", "return": -1.0, "length": 3})
    assert unknown.json()["detail"][0]["msg"] == (
        "version 7 was not served by this server; it served: 1"
    )

    # A report accepted after the refusals is a barrier: once it is in MLflow, every report
    # queued before it was flushed too. Only it is there, and only it was counted.
    assert (
        report(server.url, {"model_version": "1", "return": -5.0, "length": 9}).status_code == 202
    )
    wait_for(lambda: served_returns(MODEL, "1", since) != [], "the accepted report in MLflow")
    assert served_returns(MODEL, "1", since) == [-5.0]
    assert served_returns(MODEL, "7", since) == []
    assert summary(server, "rlops_serving_episode_return", "1") == (1, -5.0)
    assert summary(server, "rlops_serving_episode_length", "1") == (1, 9)
    assert summary(server, "rlops_serving_episode_return", "7") == (0, 0)


def test_a_body_not_declared_as_json_is_a_415(server, champion) -> None:
    answer = httpx.post(
        f"{server.url}/v1/episodes",
        content=json.dumps({"model_version": champion, "return": -1.0, "length": 3}),
        headers={"content-type": "text/plain"},
        timeout=10,
    )
    assert answer.status_code == 415
    assert summary(server, "rlops_serving_episode_return", champion) == (0, 0)


def test_an_episode_is_reported_once(server, champion) -> None:
    body = {"model_version": champion, "return": -3.0, "length": 5, "episode_id": "run-7:ep.1"}
    assert report(server.url, body).status_code == 202
    again = report(server.url, body | {"return": -4.0})
    assert again.status_code == 409
    (error,) = again.json()["detail"]
    assert error["loc"] == ["body", "episode_id"]
    assert "run-7:ep.1" in error["msg"]
    assert summary(server, "rlops_serving_episode_return", champion) == (1, -3.0)


def test_an_episode_is_reported_for_the_version_that_served_it(server, champion) -> None:
    """The champion moves while episode `e-1` runs: the episode stays on the old version,
    its report must name that version, and the report closes it."""
    assert act(server.url, "e-1").json()["model_version"] == champion
    new = register_policy(MODEL, reward=-900.0, seed=2)
    ModelRegistry(MODEL).crown(new)
    wait_for(lambda: act(server.url).json()["model_version"] == new, "the new champion served")
    assert act(server.url, "e-1").json()["model_version"] == champion  # still its version

    wrong = report(
        server.url, {"model_version": new, "return": -1.0, "length": 2, "episode_id": "e-1"}
    )
    assert wrong.status_code == 422
    (error,) = wrong.json()["detail"]
    assert error["loc"] == ["body", "model_version"]
    assert error["msg"] == f"episode e-1 was served by version {champion}"
    assert summary(server, "rlops_serving_episode_return", new) == (0, 0)

    right = {"model_version": champion, "return": -1.0, "length": 2, "episode_id": "e-1"}
    assert report(server.url, right).status_code == 202
    assert act(server.url, "e-1").json()["model_version"] == new  # closed: a new episode


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
    assert (
        report(server.url, {"model_version": champion, "return": -8.0, "length": 4}).status_code
        == 202
    )

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
    with running_server(settings(episode_flush_seconds=3600)) as server:
        body = {"model_version": champion, "return": -2.5, "length": 7}
        assert report(server.url, body).status_code == 202
        assert served_returns(MODEL, champion, since) == []  # not flushed yet
    assert served_returns(MODEL, champion, since) == [-2.5]
