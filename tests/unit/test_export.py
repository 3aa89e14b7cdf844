import math
import warnings

import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.policy import export
from rl_core.policy.export import (
    ExportMismatchError,
    export_actor,
    load_exported,
    max_action_difference,
    random_observations,
)
from rl_core.run.training import train
from rl_core.sac.networks import Actor
from tests.hostile_actors import shifted_actor


@pytest.fixture(scope="module")
def trained_actor():
    cfg = SACConfig(total_timesteps=400, hidden_sizes=(64, 64), batch_size=64, learning_starts=100)
    return train(cfg, show_progress=False).agent.actor


def test_export_round_trip_matches_eager_actor(trained_actor, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no TorchScript deprecation warning reaches the user
        result = export_actor(trained_actor, tmp_path / "actor.pt", "Pendulum-v1")
        loaded = load_exported(result.path)
    assert result.max_abs_diff <= 1e-5
    assert result.n_checked > 512  # random plus real observations
    obs = random_observations("Pendulum-v1", 64, seed=5)
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded(obs), trained_actor.deterministic_action(obs), atol=1e-5, rtol=0
        )
        assert loaded(obs).abs().max() <= 2.0  # Pendulum's torque bound
    assert isinstance(loaded, torch.jit.ScriptModule)


def test_exported_actor_has_no_distribution_code(trained_actor, tmp_path) -> None:
    result = export_actor(trained_actor, tmp_path / "actor.pt", "Pendulum-v1")
    code = load_exported(result.path).code
    assert "distributions" not in code
    assert "randn" not in code


def test_mismatch_fails_loudly(trained_actor, tmp_path, monkeypatch) -> None:
    real_script = export.script_actor

    def broken_script(actor):
        return real_script(shifted_actor(actor))

    monkeypatch.setattr(export, "script_actor", broken_script)
    with pytest.raises(ExportMismatchError, match=r"differs from the eager actor by \d"):
        export_actor(trained_actor, tmp_path / "bad.pt", "Pendulum-v1")
    assert not (tmp_path / "bad.pt").exists()


def test_max_action_difference_sees_a_changed_weight(trained_actor, tmp_path) -> None:
    loaded = load_exported(export_actor(trained_actor, tmp_path / "a.pt", "Pendulum-v1").path)
    obs = random_observations("Pendulum-v1", 32, seed=1)
    assert max_action_difference(trained_actor, loaded, obs) <= 1e-5
    with torch.no_grad():
        trained_actor.head.bias[0] += 0.5
    try:
        assert max_action_difference(trained_actor, loaded, obs) > 1e-3
    finally:
        with torch.no_grad():
            trained_actor.head.bias[0] -= 0.5


def test_a_gsde_actor_exports_with_its_clipped_mean(tmp_path) -> None:
    """gSDE clips the pre-squash mean to +-2 (SB3's clip_mean): the exported actor must too,
    or a served policy would act beyond what was trained and evaluated."""
    cfg = SACConfig(
        total_timesteps=300, hidden_sizes=(32, 32), batch_size=32, learning_starts=100, use_sde=True
    )
    actor = train(cfg, show_progress=False).agent.actor
    with torch.no_grad():
        actor.head.bias += 5.0  # every mean beyond the clip
    result = export_actor(actor, tmp_path / "actor.pt", "Pendulum-v1")
    obs = random_observations("Pendulum-v1", 64, seed=5)
    with torch.inference_mode():
        served = load_exported(result.path)(obs)
    torch.testing.assert_close(served, torch.full_like(served, 2.0 * math.tanh(2.0)))


class _HalvedActor(Actor):
    """An actor whose deterministic action is changed in its own code only."""

    def to_env_action(self, squashed: torch.Tensor) -> torch.Tensor:
        return 0.5 * squashed * self.action_scale + self.action_bias


def test_the_export_runs_the_actors_own_code() -> None:
    """A change to the actor's deterministic action reaches the export without a second copy
    of it to edit (InferenceActor calls Actor.deterministic_action)."""
    torch.manual_seed(0)
    actor = _HalvedActor(3, 1, (16, 16), -2.0 * torch.ones(1), 2.0 * torch.ones(1), obs_clip=5.0)
    obs = random_observations("Pendulum-v1", 32, seed=2)
    with torch.inference_mode():
        exported = export.script_actor(actor)(obs)
        torch.testing.assert_close(exported, actor.deterministic_action(obs), atol=1e-6, rtol=0)
        assert exported.abs().max() <= 1.0  # halved from Pendulum's bound of 2
