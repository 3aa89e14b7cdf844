from pathlib import Path

import numpy as np
import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import load_checkpoint
from rl_core.run.training import _new_noise_due, train


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


def test_training_gives_the_process_back_its_settings() -> None:
    """Denormals are flushed and torch runs on the config's threads only while training
    (rl_core/common/process_settings.py): afterwards the caller's process is as it was."""
    denormal = torch.tensor([1e-40])  # below float32's smallest normal (1.2e-38)
    before = torch.get_num_threads()
    seen: list[tuple[int, float]] = []

    def during(step: int, mean_return: float) -> None:
        seen.append((torch.get_num_threads(), (denormal * 1.0).item()))

    cfg = SACConfig(
        total_timesteps=250,  # Pendulum's first episode ends at step 200: one evaluation
        hidden_sizes=(8, 8),
        batch_size=8,
        learning_starts=50,
        torch_threads=before + 1,
        eval_every=200,
        progress_eval_seeds=(0,),
    )
    train(cfg, show_progress=False, on_evaluation=during)
    assert seen == [(before + 1, 0.0)]  # while training: the config's threads, flushed
    assert torch.get_num_threads() == before
    assert (denormal * 1.0).item() != 0.0


@pytest.mark.parametrize(
    ("train_freq", "sde_sample_freq", "redrawn_before"),
    [
        (4, -1, [0, 4, 8]),  # once per chunk of train_freq steps
        (1, -1, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
        (8, 3, [0, 3, 6, 8]),  # and every sde_sample_freq steps into a chunk, anew in each
        (8, 0, [0, 8]),
    ],
)
def test_gsde_redraws_its_noise_per_chunk_and_every_sample_freq_steps(
    train_freq: int, sde_sample_freq: int, redrawn_before: list[int]
) -> None:
    """SB3's collect_rollouts: reset_noise when a chunk starts, and when the steps collected
    in it are a multiple of sde_sample_freq."""
    steps = [s for s in range(10) if _new_noise_due(s, train_freq, sde_sample_freq)]
    assert steps == redrawn_before


def test_a_time_limit_is_stored_as_not_terminal(tmp_path: Path) -> None:
    """Pendulum ends only at its time limit (200 steps): truncated, never terminated, so every
    stored transition bootstraps, the episode's last one included."""
    cfg = SACConfig(total_timesteps=250, hidden_sizes=(8, 8), batch_size=8, learning_starts=50)
    train(cfg, checkpoint_path=tmp_path / "checkpoint.pt", show_progress=False)
    table = np.asarray(load_checkpoint(tmp_path / "checkpoint.pt")["buffer"]["table"])
    assert len(table) == 250  # the time limit's transition (row 199) among them
    assert not table[:, -1].any()
