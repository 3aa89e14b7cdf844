import torch

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


def test_training_gives_the_process_back_its_ieee_arithmetic() -> None:
    """Denormals are flushed to zero only while training: afterwards they exist again."""
    denormal = torch.tensor([1e-40])  # below float32's smallest normal (1.2e-38)
    cfg = SACConfig(total_timesteps=150, hidden_sizes=(8, 8), batch_size=8, learning_starts=50)
    train(cfg, show_progress=False)
    assert (denormal * 1.0).item() != 0.0
