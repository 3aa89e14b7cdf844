import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.envs.spec import EnvSpec
from rl_core.policy.checkpoint import (
    load_actor,
    load_agent,
    load_checkpoint,
    save_actor,
    save_checkpoint,
)
from rl_core.run.training import train

SMALL = dict(hidden_sizes=(32, 32), batch_size=32, learning_starts=50, seed=4)


def _params(agent) -> dict[str, torch.Tensor]:
    return {
        **{f"actor.{k}": v for k, v in agent.actor.state_dict().items()},
        **{f"critic.{k}": v for k, v in agent.critic.state_dict().items()},
        **{f"target.{k}": v for k, v in agent.critic_target.state_dict().items()},
        "log_alpha": agent.log_alpha.detach(),
    }


def test_checkpoint_holds_everything(tmp_path) -> None:
    cfg = SACConfig(total_timesteps=400, **SMALL)
    result = train(cfg, checkpoint_path=tmp_path / "c.pt", show_progress=False)
    state = load_checkpoint(result.checkpoint_path)
    assert state["step"] == 400
    assert state["config"] == cfg.resolved()
    assert set(state["agent"]) == {
        "actor",
        "critic",
        "critic_target",
        "policy_optimizer",
        "critic_optimizer",
        "log_alpha",
    }
    assert state["agent"]["critic_optimizer"]["state"]  # Adam moments are saved
    assert len(state["buffer"]["table"]) == 400
    assert set(state["rng"]) == {"torch", "action", "sample", "env"}
    agent, loaded_cfg = load_agent(result.checkpoint_path)
    assert loaded_cfg == cfg
    for key, value in _params(result.agent).items():
        assert torch.equal(value, _params(agent)[key]), key


def test_a_checkpoint_loads_as_it_was_made(tmp_path) -> None:
    """Neither a preset's later choice (MountainCar's gSDE, for a checkpoint written before
    `use_sde` existed) nor a refusal added since (a gSDE field without gSDE) changes or
    refuses its stored config."""
    cfg = SACConfig(
        env_id="MountainCarContinuous-v0", total_timesteps=400, log_std_init=-1.0, **SMALL
    )
    result = train(cfg, checkpoint_path=tmp_path / "c.pt", show_progress=False)
    state = load_checkpoint(result.checkpoint_path)
    del state["config"]["use_sde"]
    torch.save(state, tmp_path / "before-gsde.pt")
    agent, loaded = load_agent(tmp_path / "before-gsde.pt")
    assert loaded == cfg
    for key, value in _params(result.agent).items():
        assert torch.equal(value, _params(agent)[key]), key
    actor, env = load_actor(tmp_path / "before-gsde.pt")
    assert env.id == "MountainCarContinuous-v0"
    assert not actor.spec.sde


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"normalize_obs": True},
        {"eval_every": 300},
        # The checkpoint at step 600 falls 24 steps into a 64-step chunk: gSDE's noise
        # matrix of that chunk must travel in it.
        {"use_sde": True, "train_freq": 64, "gradient_steps": 8},
    ],
    ids=["plain", "norm", "eval", "gsde"],
)
def test_resume_continues_bit_for_bit(tmp_path, options: dict) -> None:
    """Observation statistics, the best policy of the evaluations during training and gSDE's
    noise matrix included: all travel in the checkpoint."""
    recipe = {**SMALL, **options}
    straight = train(SACConfig(total_timesteps=1000, **recipe), show_progress=False)

    # Checkpoints land at episode ends (Pendulum: every 200 steps); stop after the one at 600.
    half = train(
        SACConfig(total_timesteps=600, checkpoint_every=600, **recipe),
        checkpoint_path=tmp_path / "c.pt",
        show_progress=False,
    )
    assert half.steps == 600
    resumed = train(
        SACConfig(total_timesteps=1000, checkpoint_every=600, **recipe),
        resume_from=tmp_path / "c.pt",
        show_progress=False,
    )

    assert resumed.episode_returns == straight.episode_returns
    for key, value in _params(straight.agent).items():
        assert torch.equal(value, _params(resumed.agent)[key]), key
    if straight.best is not None:
        assert (resumed.best.mean_return, resumed.best.step) == (
            straight.best.mean_return,
            straight.best.step,
        )
        for key, value in straight.best.actor_state.items():
            assert torch.equal(value, resumed.best.actor_state[key]), key


def test_resume_refuses_a_different_recipe(tmp_path) -> None:
    train(
        SACConfig(total_timesteps=200, **SMALL),
        checkpoint_path=tmp_path / "c.pt",
        show_progress=False,
    )
    with pytest.raises(ValueError, match="different config"):
        train(
            SACConfig(total_timesteps=400, **{**SMALL, "seed": 5}),
            resume_from=tmp_path / "c.pt",
            show_progress=False,
        )


def test_foreign_file_is_refused(tmp_path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an rlops checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_save_is_atomic(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "x.pt", {"step": 1})
    assert path.exists()
    assert not (tmp_path / "x.pt.tmp").exists()


@pytest.mark.parametrize("use_sde", [False, True], ids=["gaussian", "gsde"])
def test_the_actor_loads_on_its_own_from_a_small_file(tmp_path, use_sde: bool) -> None:
    """No env, critics, optimizers or replay rows: the spec saved beside the weights builds it."""
    cfg = SACConfig(total_timesteps=400, env_kwargs={"g": 9.81}, use_sde=use_sde, **SMALL)
    result = train(cfg, checkpoint_path=tmp_path / "checkpoint.pt", show_progress=False)
    actor_file = tmp_path / "actor.pt"  # written beside the final checkpoint
    assert actor_file.stat().st_size < (tmp_path / "checkpoint.pt").stat().st_size / 4
    observations = torch.randn(64, 3)
    expected = result.agent.actor.deterministic_action(observations)
    for source in (actor_file, tmp_path / "checkpoint.pt"):
        actor, env = load_actor(source)
        assert env == cfg.env == EnvSpec("Pendulum-v1", (), {"g": 9.81})
        assert actor.spec == result.agent.actor.spec
        assert torch.equal(actor.deterministic_action(observations), expected), source
    save_actor(tmp_path / "again.pt", actor, env)
    assert torch.equal(load_actor(tmp_path / "again.pt")[0].head.weight, actor.head.weight)
