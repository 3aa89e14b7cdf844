from rl_core.config import SACConfig
from rl_core.training import train


def test_continuous_env_other_than_pendulum_trains() -> None:
    cfg = SACConfig(
        env_id="MountainCarContinuous-v0",
        total_timesteps=300,
        hidden_sizes=(32, 32),
        batch_size=32,
        learning_starts=50,
    )
    result = train(cfg, show_progress=False)
    assert result.steps == 300
    assert result.agent.actor.action_scale.tolist() == [1.0]
