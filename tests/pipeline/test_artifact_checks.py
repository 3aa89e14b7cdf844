"""Promotion and the latency benchmark load a policy only if its files are the ones recorded:
the champion's against its version's digests, a fresh export against its LoggedModel's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from rl_core.policy.checkpoint import save_actor
from rl_core.policy.policy_integrity import PolicyIntegrityError
from rl_core.policy.policy_model import log_policy_model
from rl_core.sac.networks import Actor
from rlops_airflow.stages.export import benchmark_candidate
from rlops_airflow.stages.promote import _champion_score
from rlops_registry import tags
from rlops_registry.registry import ModelRegistry
from tests.hostile_actors import SavesAFile, save_scripted
from tests.serving.policies import logged_model_id, overwrite_actor, register_policy

SHA = r"has sha256 [0-9a-f]{64}, but sha256 [0-9a-f]{64} was registered"


def test_a_champion_changed_after_registration_is_not_re_evaluated(
    pipeline_store, tiny_settings, tmp_path: Path
) -> None:
    registry = ModelRegistry(tiny_settings.model_name)
    version = register_policy(registry.name, reward=-900.0)
    registry.crown(version)  # its run records no evaluation: promotion must re-evaluate it
    registry.set_tags(version, {tags.SOURCE_RUN_ID: registry.version(version).run_id})
    written = tmp_path / "written.pt"
    hostile = save_scripted(SavesAFile(written), tmp_path / "actor.pt")
    overwrite_actor(logged_model_id(registry.name, version), hostile)
    expected = rf"^{registry.name} v{version} \(champion\): artifacts/actor\.pt {SHA}"
    with pytest.raises(PolicyIntegrityError, match=expected):
        _champion_score(registry, tiny_settings)
    assert not written.exists()


def test_the_benchmark_refuses_an_export_changed_after_it_was_logged(
    pipeline_store, tmp_path: Path
) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("bench")).info.run_id
    torch.manual_seed(0)
    actor = Actor(3, 1, (16, 16), torch.tensor([-2.0]), torch.tensor([2.0]))
    client.log_artifact(run_id, str(save_actor(tmp_path / "eager.pt", actor, "Pendulum-v1")), "a")
    logged = log_policy_model(actor, "Pendulum-v1", run_id)
    written = tmp_path / "written.pt"
    overwrite_actor(logged.model_id, save_scripted(SavesAFile(written), tmp_path / "actor.pt"))
    exported = {"model_uri": logged.model_uri, "model_id": logged.model_id}
    with pytest.raises(PolicyIntegrityError, match=rf"^LoggedModel {logged.model_id}: .*{SHA}"):
        benchmark_candidate(run_id, "a/eager.pt", exported)
    assert not written.exists()
