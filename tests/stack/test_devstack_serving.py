"""devstack's policy-server keys: what the server is given is enough to check every token
devstack hands out, and holds none of them."""

from __future__ import annotations

import pytest

from devstack.serving import ServingKeys
from rlops_serving.auth import KeyScope
from rlops_serving.settings import ServingSettings


def test_the_server_env_checks_each_token_with_its_scopes_and_holds_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = ServingKeys()
    env = keys.server_env(port=8123)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ServingSettings()  # as `python -m rlops_serving` reads its environment
    ring = settings.key_ring()
    client, metrics = ring.find(keys.client_token), ring.find(keys.metrics_token)
    assert client is not None and client.scopes == {KeyScope.ACT, KeyScope.REPORT}
    assert metrics is not None and metrics.scopes == {KeyScope.METRICS}
    assert len(ring) == 2
    tokens = (keys.client_token, keys.metrics_token)
    assert not [value for value in env.values() if any(token in value for token in tokens)]
    assert (settings.host, settings.port) == ("127.0.0.1", 8123)
    assert settings.ticket_key() == keys.ticket_secret.encode()


def test_every_stack_gets_its_own_keys() -> None:
    first, second = ServingKeys(), ServingKeys()
    assert first.client_token != second.client_token
    assert first.metrics_token != second.metrics_token
    assert first.ticket_secret != second.ticket_secret
