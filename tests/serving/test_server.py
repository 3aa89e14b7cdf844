"""The policy server over real HTTP: answers, refusals, probes and metrics."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from rlops_registry import tags
from rlops_registry.registry import ModelRegistry
from rlops_serving.app import create_app
from rlops_serving.schemas import ActRequest, non_finite_action_errors
from tests.serving.conftest import AUTH, MODEL, running_server, settings, wait_for
from tests.serving.policies import register_broken_version, register_policy

OBS = [0.5, -0.3, 0.8]


JSON = {"content-type": "application/json"}


def act(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/v1/act", json=body, headers=AUTH, timeout=10)


def test_acts_on_one_observation_and_on_a_batch(server, champion) -> None:
    one = act(server.url, {"observation": OBS})
    assert one.status_code == 200
    assert one.json()["model_name"] == MODEL
    assert one.json()["model_version"] == champion
    (action,) = one.json()["action"]  # Pendulum: one torque in [-2, 2]
    assert -2.0 <= action <= 2.0

    batch = [OBS, [1.0, 0.0, -4.0], [-1.0, 0.0, 8.0]]
    many = act(server.url, {"observations": batch})
    assert many.status_code == 200
    singles = [act(server.url, {"observation": row}).json()["action"][0] for row in batch]
    assert [a for (a,) in many.json()["actions"]] == pytest.approx(singles, abs=1e-5)


def test_a_batch_is_one_forward_pass(server) -> None:
    before = server.scrape()
    assert act(server.url, {"observations": [OBS] * 8}).status_code == 200
    after = server.scrape()
    passes = ("rlops_serving_batch_size_count", frozenset())
    observations = ("rlops_serving_batch_size_sum", frozenset())
    assert after[passes] - before[passes] == 1
    assert after[observations] - before[observations] == 8


BAD_INPUTS = [
    ({"observation": [0.1, 0.2]}, ["body", "observation"]),
    ({"observation": [0.1, 0.2, 0.3, 0.4]}, ["body", "observation"]),
    ({"observations": [OBS, [0.1, 0.2]]}, ["body", "observations", 1]),
    ('{"observation": [NaN, 0.2, 0.3]}', ["body", "observation", 0]),
    ('{"observation": [0.1, Infinity, 0.3]}', ["body", "observation", 1]),
    ('{"observations": [[0.1, 0.2, 1e999]]}', ["body", "observations", 0, 2]),
    ({"observation": [3.5e38, 0.2, 0.3]}, ["body", "observation", 0]),  # beyond float32
    ({"observation": [0.1, -1e308, 0.3]}, ["body", "observation", 1]),
    ({"observations": [OBS, [0.1, 0.2, 1e300]]}, ["body", "observations", 1, 2]),
    ({"observation": ["0.5", 0.2, 0.3]}, ["body", "observation", 0]),
    ({"observation": [True, 0.2, 0.3]}, ["body", "observation", 0]),
    ({"observation": [None, 0.2, 0.3]}, ["body", "observation", 0]),
    ({"observation": [OBS]}, ["body", "observation", 0]),
    ({"observation": 0.5}, ["body", "observation"]),
    ({"observation": []}, ["body", "observation"]),
    ({"observations": []}, ["body", "observations"]),
    ({"observations": [OBS] * 9}, ["body", "observations"]),  # max_batch is 8
    ({"observations": [[]]}, ["body", "observations", 0]),
    ({}, ["body"]),
    ({"observation": OBS, "observations": [OBS]}, ["body"]),
    ({"observation": OBS, "temperature": 0.1}, ["body", "temperature"]),
    ([OBS], ["body"]),
    ("not json", ["body"]),
    ("", ["body"]),
    ("[[[[", ["body"]),
    ("\x00", ["body"]),
    ('{"observations": {"a": [0.1, 0.2, 0.3]}}', ["body", "observations"]),
]
"""(body, where the 422 must point); a str body is sent as is, anything else as JSON."""


def test_bad_input_is_a_422_naming_the_field(server, subtests) -> None:
    for body, loc in BAD_INPUTS:
        content = body if isinstance(body, str) else json.dumps(body)
        with subtests.test(body=content[:60]):
            response = httpx.post(
                f"{server.url}/v1/act", content=content, headers=AUTH | JSON, timeout=10
            )
            assert response.status_code == 422, response.text
            (error,) = response.json()["detail"]
            assert error["loc"] == loc
            assert error["msg"]
    statuses = {
        dict(labels)["status"]
        for (name, labels), value in server.scrape().items()
        if name == "rlops_serving_requests_total"
    }
    assert statuses == {"422"}  # never a 500


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("", 415),
        ("application/json; charset=utf-8", 200),
        ("application/x+json", 200),
    ],
)
def test_only_a_body_declared_as_json_is_read(server, content_type, status) -> None:
    response = httpx.post(
        f"{server.url}/v1/act",
        content=json.dumps({"observation": OBS}),
        headers=AUTH | {"content-type": content_type},
        timeout=10,
    )
    assert response.status_code == status, response.text
    if status == 415:
        assert "application/json" in response.json()["detail"]


def test_an_action_that_overflows_is_refused_naming_the_row() -> None:
    """Finite float32 inputs can still overflow inside the network: never a NaN in JSON."""
    batch = ActRequest(observations=[OBS, OBS, OBS])
    errors = non_finite_action_errors(batch, [[0.5], [math.inf], [math.nan]])
    assert [e["loc"] for e in errors] == [("observations", 1), ("observations", 2)]
    single = ActRequest(observation=OBS)
    assert [e["loc"] for e in non_finite_action_errors(single, [[-math.inf]])] == [("observation",)]
    assert non_finite_action_errors(single, [[1.0]]) == []


def test_a_batch_of_wrong_rows_names_each_row(server) -> None:
    response = act(server.url, {"observations": [[0.1], OBS, [0.1, 0.2]]})
    assert response.status_code == 422
    details = response.json()["detail"]
    assert [d["loc"] for d in details] == [["body", "observations", 0], ["body", "observations", 2]]
    assert details[0]["msg"] == "expected 3 values (the served model's obs_dim), got 1"


def test_oversized_or_unsized_bodies_are_refused_unread(server) -> None:
    big = {"observations": [[0.123456789] * 3] * 200}  # > max_body_bytes (4096)
    assert act(server.url, big).status_code == 413
    chunked = httpx.post(
        f"{server.url}/v1/act",
        content=iter([json.dumps({"observation": OBS}).encode()]),  # no Content-Length
        headers=AUTH | JSON,
        timeout=10,
    )
    assert chunked.status_code == 411
    assert act(server.url, {"observation": OBS}).status_code == 200  # still serving


def test_an_act_body_longer_than_max_batch_rows_can_be_is_refused_unread(server) -> None:
    """Under max_body_bytes, but more bytes than 8 rows (max_batch) of 3 values can take: the
    413 says so before the body is parsed; a long but possible batch is parsed (422 names it)."""
    long_rows = {"observations": [[0.123456789012345] * 3] * 40}
    assert len(json.dumps(long_rows)) < 4096  # max_body_bytes would let it through
    refused = act(server.url, long_rows)
    assert refused.status_code == 413
    assert "8 observations (max_batch) of 3 values" in refused.json()["detail"]
    parsed = act(server.url, {"observations": [[0.1, 0.2, 0.3]] * 9})
    assert parsed.status_code == 422
    assert parsed.json()["detail"][0]["loc"] == ["body", "observations"]


def test_probes_and_metrics(server, champion) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready", headers=AUTH, timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_name": MODEL, "model_version": champion}
    act(server.url, {"observation": OBS})
    act(server.url, {"observation": [1.0]})
    httpx.get(f"{server.url}/no/such/path", timeout=10)

    metrics = server.scrape()
    act_path = ("path", "/v1/act")
    answered = frozenset({act_path, ("status", "200"), ("version", champion)})
    assert metrics[("rlops_serving_requests_total", answered)] == 1
    assert metrics[("rlops_serving_errors_total", frozenset({act_path, ("status", "422")}))] == 1
    timed = frozenset({act_path, ("version", champion)})  # the 422 was checked against it
    assert metrics[("rlops_serving_request_duration_seconds_count", timed)] == 2
    other = frozenset({("path", "other"), ("status", "404"), ("version", "")})
    assert metrics[("rlops_serving_requests_total", other)] == 1  # unknown paths: one series
    assert metrics[("rlops_serving_requests_in_flight", frozenset())] == 1  # this scrape
    info = frozenset({("alias", "champion"), ("name", MODEL), ("version", champion)})
    assert metrics[("rlops_serving_model_info", info)] == 1
    assert metrics[("rlops_serving_model_loads_total", frozenset({("outcome", "success")}))] == 1
    champion_alias = frozenset({("alias", "champion")})
    assert metrics[("rlops_serving_model_recorded_reward", champion_alias)] == -1000.0
    observed = frozenset({("version", champion), ("alias", "champion")})
    assert metrics[("rlops_serving_observations_total", observed)] == 1


def test_the_monitors_online_return_is_exported(server, champion) -> None:
    gauge = ("rlops_serving_model_online_mean_return", frozenset({("alias", "champion")}))
    assert math.isnan(server.scrape()[gauge])  # not monitored yet
    ModelRegistry(MODEL).set_tags(champion, {tags.ONLINE_RETURN: "-150.5"})
    wait_for(lambda: server.scrape()[gauge] == -150.5, "the online return on /metrics")


def test_starts_unready_without_a_champion_then_loads_it(mlflow_store) -> None:
    version = register_policy(MODEL, reward=-1000.0)
    other = "rlops-sac-mountaincarcontinuous"  # another env's model: the server says it has one
    ModelRegistry(other).crown(register_policy(other, reward=-1000.0))
    with running_server(settings()) as server:
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        unready = httpx.get(f"{server.url}/ready", headers=AUTH, timeout=10)
        assert unready.status_code == 503
        refused = act(server.url, {"observation": OBS})
        assert refused.status_code == 503
        assert (
            refused.json()["detail"]
            == unready.json()["detail"]
            == (
                f"{MODEL}@champion is not set; models with a champion: {other} "
                "(RLOPS_SERVING_MODEL_NAME chooses the model to serve)"
            )
        )

        ModelRegistry(MODEL).crown(version)
        wait_for(
            lambda: httpx.get(f"{server.url}/ready", headers=AUTH, timeout=10).status_code == 200,
            "ready after the alias was set",
        )
        assert act(server.url, {"observation": OBS}).json()["model_version"] == version


def test_a_broken_version_is_not_served(server, champion, tmp_path) -> None:
    ModelRegistry(MODEL).crown(register_broken_version(MODEL, tmp_path))

    failures = ("rlops_serving_model_loads_total", frozenset({("outcome", "failure")}))
    wait_for(lambda: server.scrape().get(failures, 0) >= 1, "a failed load")
    answer = act(server.url, {"observation": OBS})
    assert answer.status_code == 200
    assert answer.json()["model_version"] == champion  # the good version stays


def test_app_can_be_built_twice_in_one_process(mlflow_store) -> None:
    """Each app has its own metrics registry (no 'Duplicated timeseries')."""
    create_app(settings())
    create_app(settings())
