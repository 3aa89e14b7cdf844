"""A registered version whose files changed in the artifact store after registration is never
loaded: not by the policy server (it keeps serving the good version, or stays unready), not by
the drift monitor. Nothing of the swapped actor runs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from rl_core.policy.policy_integrity import DIGESTS_TAG
from rlops_airflow.monitoring import simulate
from rlops_registry.registry import ModelRegistry
from rlops_serving.policy import PolicyLoadError, load_policy
from tests.hostile_actors import MapsAFile, save_scripted
from tests.serving.conftest import AUTH, MODEL, running_server, settings, wait_for
from tests.serving.policies import logged_model_id, overwrite_actor, register_policy

OBS = [0.5, -0.3, 0.8]
ORIGINAL = b"honest bytes"
FAILED_LOADS = ("rlops_serving_model_loads_total", frozenset({("outcome", "failure")}))


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """The file the swapped-in actor would overwrite when called."""
    path = tmp_path / "target.bin"
    path.write_bytes(ORIGINAL)
    return path


@pytest.fixture
def tampered(mlflow_store: str, target: Path, tmp_path: Path) -> str:
    """A version registered as the pipeline does, whose actor.pt was then overwritten in the
    artifact store with one whose forward maps and overwrites `target`."""
    version = register_policy(MODEL, reward=-900.0, seed=2)
    hostile = save_scripted(MapsAFile(target), tmp_path / "actor.pt")
    overwrite_actor(logged_model_id(MODEL, version), hostile)
    return version


def _refusal(version: str) -> str:
    with pytest.raises(PolicyLoadError) as refused:
        load_policy(MODEL, version)
    return str(refused.value)


def test_the_loader_names_the_changed_file_and_both_digests(tampered: str, target: Path) -> None:
    message = _refusal(tampered)
    assert message.startswith(f"{MODEL} v{tampered}: artifacts/actor.pt has sha256 ")
    assert "but sha256 " in message
    assert message.endswith("was registered: the file was changed after registration")
    assert target.read_bytes() == ORIGINAL


def test_the_server_keeps_serving_the_good_version(
    server, champion: str, tampered: str, target: Path
) -> None:
    ModelRegistry(MODEL).crown(tampered)
    wait_for(lambda: server.scrape().get(FAILED_LOADS, 0) >= 1, "a refused load")
    answer = httpx.post(f"{server.url}/v1/act", json={"observation": OBS}, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == champion
    assert target.read_bytes() == ORIGINAL


def test_a_server_whose_only_champion_is_tampered_stays_unready(
    tampered: str, target: Path
) -> None:
    ModelRegistry(MODEL).crown(tampered)
    with running_server(settings()) as server:
        wait_for(lambda: server.scrape().get(FAILED_LOADS, 0) >= 1, "a refused load")
        assert httpx.get(f"{server.url}/ready", headers=AUTH, timeout=10).status_code == 503
        answer = httpx.post(f"{server.url}/v1/act", json={"observation": OBS}, headers=AUTH)
        assert answer.status_code == 503
    assert target.read_bytes() == ORIGINAL


def test_the_drift_monitor_refuses_it_too(tampered: str, target: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"artifacts/actor\.pt has sha256 [0-9a-f]{64}"):
        simulate(MODEL, tampered, seeds=[1000])
    assert target.read_bytes() == ORIGINAL


def test_a_version_that_records_no_digests_is_refused_saying_why(mlflow_store: str) -> None:
    version = register_policy(MODEL, reward=-900.0)
    MlflowClient().delete_model_version_tag(MODEL, version, DIGESTS_TAG)  # as before digests
    message = _refusal(version)
    assert message.startswith(f"{MODEL} v{version} records no file digests (tag 'rlops.sha256')")
    assert "predates digest checks" in message
    assert "Register the policy again through the pipeline" in message
