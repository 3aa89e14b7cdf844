"""A TorchScript actor is refused before any of its code runs unless it only does tensor maths;
every actor rl_core can train still passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl_core.common.config import SACConfig, build_config
from rl_core.common.presets import PRESETS
from rl_core.policy.actor_audit import ActorAuditError
from rl_core.policy.export import load_exported, script_actor
from rl_core.sac.networks import Actor
from rl_core.sac.torchscript import quiet_torchscript
from tests.hostile_actors import (
    MapsAFile,
    SavesAFile,
    SavesInABranch,
    SavesWhenLoaded,
    save_scripted,
    with_saving_hook,
)

ORIGINAL = b"honest bytes"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """The file an attack reads or writes; it must stay exactly as it is."""
    path = tmp_path / "target.bin"
    path.write_bytes(ORIGINAL)
    return path


def _variants() -> list[tuple[str, SACConfig]]:
    """The default config and every preset, each with and without observation normalisation."""
    configs = [("default", SACConfig())] + [
        (env_id, build_config({"env_id": env_id})) for env_id in PRESETS
    ]
    return [
        (f"{name}-normalize={normalize}", config.model_copy(update={"normalize_obs": normalize}))
        for name, config in configs
        for normalize in (False, True)
    ]


@pytest.mark.parametrize(("name", "config"), _variants(), ids=[n for n, _ in _variants()])
def test_every_actor_rl_core_trains_passes_the_audit(name, config, tmp_path: Path) -> None:
    act_dim = 3
    actor = Actor(
        obs_dim=5,
        act_dim=act_dim,
        hidden_sizes=config.hidden_sizes,
        action_low=-torch.ones(act_dim),
        action_high=torch.ones(act_dim),
        obs_clip=config.obs_clip if config.normalize_obs else None,
        sde_log_std_init=config.log_std_init if config.use_sde else None,
    )
    path = tmp_path / "actor.pt"
    with quiet_torchscript():
        torch.jit.save(script_actor(actor), str(path))
    observations = torch.randn(4, 5)
    with torch.inference_mode():
        torch.testing.assert_close(
            load_exported(path)(observations), actor.deterministic_action(observations)
        )


def test_a_forward_that_maps_a_file_is_refused_before_it_runs(target, tmp_path: Path) -> None:
    path = save_scripted(MapsAFile(target), tmp_path / "actor.pt")
    with pytest.raises(ActorAuditError) as refused:
        load_exported(path)
    assert str(refused.value) == (
        "actor.pt: forward calls aten::from_file, which is not allowed in a policy "
        "(allowed: tensor math ops)"
    )
    assert target.read_bytes() == ORIGINAL
    # The attack is real: loaded without the audit and called once, the file is overwritten.
    with quiet_torchscript():
        torch.jit.load(str(path))(torch.zeros(1, 3))
    assert target.read_bytes() == b"XXXX" + ORIGINAL[4:]


@pytest.mark.parametrize("attack", [SavesAFile, SavesInABranch], ids=["forward", "nested-if"])
def test_a_forward_that_saves_a_file_is_refused(attack, tmp_path: Path) -> None:
    written = tmp_path / "written.pt"
    path = save_scripted(attack(written), tmp_path / "actor.pt")
    with pytest.raises(ActorAuditError, match=r"^actor\.pt: forward calls aten::save, which"):
        load_exported(path)
    assert not written.exists()


def test_a_setstate_is_refused_before_torch_loads_the_file(tmp_path: Path) -> None:
    written = tmp_path / "written.pt"
    path = save_scripted(SavesWhenLoaded(written), tmp_path / "actor.pt")
    with pytest.raises(ActorAuditError, match=r"^actor\.pt: .*code/.*\.py defines __setstate__"):
        load_exported(path)
    assert not written.exists()
    # The attack is real: torch.jit.load alone runs it.
    with quiet_torchscript():
        torch.jit.load(str(path))
    assert written.exists()


def test_a_forward_hook_is_audited_like_a_method(tmp_path: Path) -> None:
    path = save_scripted(with_saving_hook(), tmp_path / "actor.pt")
    with pytest.raises(ActorAuditError, match=r"_save_in_hook \(forward hook\) calls aten::save"):
        load_exported(path)


def test_a_file_that_is_no_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "actor.pt"
    path.write_bytes(b"not a zip")
    with pytest.raises(ActorAuditError, match=r"^actor\.pt: not a TorchScript archive"):
        load_exported(path)
