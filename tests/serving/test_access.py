"""Who may call the policy server, over real HTTP: every route but `/health` needs a key with
its scope; a missing or unknown key is a 401, a key without the scope a 403 naming it."""

from __future__ import annotations

import json

import httpx
import pytest

from rlops_serving.auth import ApiKeyError, KeyRing, new_token, token_digest
from rlops_serving.settings import ServingSettings
from tests.serving.conftest import KEYS, running_server, settings

OBS = [0.5, -0.3, 0.8]
ROUTES = [
    ("POST", "/v1/act", "act"),
    ("POST", "/v1/episodes", "report"),
    ("GET", "/metrics", "metrics"),
    ("GET", "/ready", "metrics"),
]
BODY = {
    "/v1/act": {"observation": OBS},
    "/v1/episodes": {"ticket": "A" * 64, "return": -1.0, "length": 1},
}


def call(url: str, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = BODY.get(path)
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_each_route_needs_a_key_with_its_scope(server, method, path, scope) -> None:
    anonymous = call(server.url, method, path, {})
    assert anonymous.status_code == 401
    assert f"needs a key with scope '{scope}'" in anonymous.json()["detail"]
    assert anonymous.headers["www-authenticate"].startswith('Bearer realm="rlops"')

    unknown = call(server.url, method, path, {"Authorization": f"Bearer {new_token('x')}"})
    assert unknown.status_code == 401
    assert "unknown or revoked API key" in unknown.json()["detail"]
    not_bearer = call(server.url, method, path, {"Authorization": "Basic dXNlcjpwdw=="})
    assert not_bearer.status_code == 401

    holders = {"act": "actor", "report": "reporter", "metrics": "operator"}
    lacking = "operator" if scope != "metrics" else "actor"
    wrong = call(server.url, method, path, KEYS[lacking])
    assert wrong.status_code == 403
    assert f"lacks scope '{scope}'" in wrong.json()["detail"]
    assert "insufficient_scope" in wrong.headers["www-authenticate"]

    allowed = call(server.url, method, path, KEYS[holders[scope]])
    assert allowed.status_code not in (401, 403), allowed.text


def test_health_answers_anyone(server) -> None:
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}


def test_refusals_are_counted_and_read_no_body(server) -> None:
    """A 401 comes before the body is parsed: even a body that is not JSON gets the 401."""
    answer = httpx.post(
        f"{server.url}/v1/act",
        content=b"\x00 not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 401
    refused = frozenset({("path", "/v1/act"), ("status", "401")})
    assert server.scrape()[("rlops_serving_errors_total", refused)] == 1


def _ring(*tokens: tuple[str, str]) -> str:
    return json.dumps(
        [
            {"id": key_id, "sha256": token_digest(token), "scopes": ["act"]}
            for key_id, token in tokens
        ]
    )


def test_keys_rotate_without_downtime(champion) -> None:
    """Old and new key work side by side; once the old one is removed it is refused."""
    old, new = ("old", new_token("old")), ("new", new_token("new"))
    bearer = {key_id: {"Authorization": f"Bearer {token}"} for key_id, token in (old, new)}
    with running_server(settings(api_keys=_ring(old, new))) as server:
        for key_id in ("old", "new"):
            answer = httpx.post(
                f"{server.url}/v1/act", json={"observation": OBS}, headers=bearer[key_id]
            )
            assert answer.status_code == 200
    with running_server(settings(api_keys=_ring(new))) as server:
        url = f"{server.url}/v1/act"
        assert httpx.post(url, json={"observation": OBS}, headers=bearer["new"]).status_code == 200
        assert httpx.post(url, json={"observation": OBS}, headers=bearer["old"]).status_code == 401


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ('[{"id": "a", "sha256": "xyz", "scopes": ["act"]}]', "[0][sha256]"),
        ('[{"id": "a", "sha256": "' + "0" * 64 + '", "scopes": ["admin"]}]', "[0][scopes]"),
        ('[{"id": "a", "sha256": "' + "0" * 64 + '", "scopes": []}]', "[0][scopes]"),
        ('[{"id": "a b", "sha256": "' + "0" * 64 + '", "scopes": ["act"]}]', "[0][id]"),
        ('[{"id": "a", "token": "rlops_a_x", "scopes": ["act"]}]', "[0][token]"),
        ("not json", "Invalid JSON"),
    ],
)
def test_a_bad_key_entry_is_refused_naming_it(raw, named) -> None:
    with pytest.raises(ApiKeyError, match="API keys in test") as refused:
        KeyRing.parse(raw, "test")
    assert named in str(refused.value)


def test_a_key_given_twice_is_refused() -> None:
    entry = {"id": "a", "sha256": "0" * 64, "scopes": ["act"]}
    with pytest.raises(ApiKeyError, match="id given twice"):
        KeyRing.parse(json.dumps([entry, entry | {"sha256": "1" * 64}]), "test")


def test_keys_are_required_unless_turned_off(tmp_path) -> None:
    with pytest.raises(ApiKeyError, match="no API keys"):
        ServingSettings().key_ring()
    assert len(ServingSettings(require_api_keys=False).key_ring()) == 0
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(_ring(("a", new_token("a"))))
    with pytest.raises(ApiKeyError, match="not both"):
        ServingSettings(api_keys_file=keys_file, api_keys=_ring()).key_ring()
    assert len(ServingSettings(api_keys_file=keys_file).key_ring()) == 1
