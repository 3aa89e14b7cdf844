"""Whatever a client sends, the policy server answers 2xx or 4xx, and keeps answering.

Hypothesis generates thousands of bodies: arbitrary JSON (nesting, huge and tiny numbers,
NaN and infinities as Python's json writes them, strings, nulls), near-valid requests with
wrong sizes and extra keys, raw bytes, and assorted content types, to `POST /v1/act` and
`POST /v1/episodes`.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import AUTH, running_server
from tests.serving.conftest import settings as server_settings

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([3.4028234663852886e38, 3.5e38, -3.5e38, 1e308, 1e-320, -0.0]),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=40,
)
OBSERVATION = st.lists(NUMBERS, min_size=0, max_size=5)
TICKETS = st.text(alphabet="AB_-09z", min_size=60, max_size=68) | st.text(max_size=130) | JSON
"""Near-valid episode tickets (base64url of about the right length), and anything else."""
NEAR_VALID = st.one_of(
    st.fixed_dictionaries({"observation": OBSERVATION}),
    st.fixed_dictionaries({"observations": st.lists(OBSERVATION, min_size=0, max_size=10)}),
    st.fixed_dictionaries({"observation": OBSERVATION}, optional={"extra": JSON}),
    st.fixed_dictionaries({"observation": OBSERVATION, "ticket": TICKETS}),
    st.fixed_dictionaries({"observation": OBSERVATION, "start_episode": JSON}),
    st.dictionaries(st.sampled_from(["observation", "observations", "x"]), JSON, max_size=3),
)
NEAR_VALID_REPORT = st.fixed_dictionaries(
    {
        "ticket": TICKETS,
        "return": NUMBERS | JSON,
        "length": st.integers(min_value=-5, max_value=10**8) | NUMBERS | JSON,
    },
    optional={"model_version": st.sampled_from(["1", "01", ""]) | JSON, "extra": JSON},
)
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", ""]
)


def _bodies(near_valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(JSON.map(json.dumps), near_valid.map(json.dumps), st.binary(max_size=200))


def _not_json(constant: str) -> None:
    raise AssertionError(f"the answer holds {constant}, which is not JSON")


@pytest.mark.parametrize(
    ("path", "bodies", "examples"),
    [("/v1/act", _bodies(NEAR_VALID), 2000), ("/v1/episodes", _bodies(NEAR_VALID_REPORT), 500)],
)
def test_no_request_gets_a_5xx(champion, path, bodies, examples) -> None:
    limits = server_settings(max_batch=8, max_body_bytes=4096, report_rate_per_key=1e6)
    with (
        running_server(limits) as server,
        httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as http,
    ):

        @settings(
            max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        @given(body=bodies, content_type=CONTENT_TYPES)
        def every_answer_is_2xx_or_4xx(body: str | bytes, content_type: str) -> None:
            response = http.post(path, content=body, headers={"content-type": content_type})
            assert 200 <= response.status_code < 500, (body, response.status_code, response.text)
            if response.status_code < 300:  # an answer is strict JSON: no NaN, no Infinity
                json.loads(response.text, parse_constant=_not_json)

        every_answer_is_2xx_or_4xx()
        assert http.get("/health").status_code == 200
        started = http.post(
            "/v1/act", json={"observation": [0.5, -0.3, 0.8], "start_episode": True}
        )
        valid = {
            "/v1/act": {"observation": [0.5, -0.3, 0.8]},
            "/v1/episodes": {"ticket": started.json()["ticket"], "return": -1.0, "length": 1},
        }[path]
        assert 200 <= http.post(path, json=valid).status_code < 300
        statuses = {
            dict(labels)["status"]
            for (name, labels), _ in server.scrape().items()
            if name == "rlops_serving_requests_total"
        }
        assert not {status for status in statuses if status.startswith("5")}, statuses
