"""Observation normalization: running statistics updated in training only, kept in every
file the actor travels in, and baked into the exported actor, which takes raw observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import load_actor
from rl_core.policy.export import random_observations
from rl_core.policy.policy_model import _pyfunc, load_policy_folder, save_policy_model
from rl_core.run.training import train
from rl_core.sac.networks import ObsNormalizer

RECIPE = {
    "env_id": "MountainCarContinuous-v0",  # position ~-0.5, velocity < 0.07: far from N(0, 1)
    "total_timesteps": 600,
    "learning_starts": 100,
    "hidden_sizes": (32, 32),
    "batch_size": 32,
    "normalize_obs": True,
    "obs_clip": 5.0,
}


def test_running_moments_match_the_whole_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(1000, 3, generator=generator) * torch.tensor([1.0, 10.0, 0.1]) + 4.0
    normalizer = ObsNormalizer(3, clip=5.0)
    for chunk in data.split(7):  # uneven batches, as steps and resets arrive
        normalizer.update(chunk)
    torch.testing.assert_close(normalizer.mean, data.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(normalizer.var, data.var(0, unbiased=False), rtol=1e-3, atol=1e-5)
    normalized = normalizer(data)
    torch.testing.assert_close(normalized.mean(0), torch.zeros(3), atol=1e-3, rtol=0)
    assert normalizer(torch.full((1, 3), 1e6)).max().item() == 5.0  # clipped


def test_training_learns_the_statistics_of_what_it_visits(tmp_path) -> None:
    result = train(SACConfig(**RECIPE), checkpoint_path=tmp_path / "c.pt", show_progress=False)
    normalizer = result.agent.actor.normalizer
    resets = 1  # MountainCar's 999-step episodes: one reset in 600 steps
    assert normalizer.count.item() == pytest.approx(600 + resets, abs=1e-3)
    assert -1.2 <= normalizer.mean[0].item() <= 0.6  # a position
    assert normalizer.var[1].item() < 0.01  # velocities are tiny: the scale it corrects
    actor, _ = load_actor(tmp_path / "actor.pt")
    assert actor.spec.obs_clip == 5.0
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(actor.normalizer, name), getattr(normalizer, name)), name


def test_the_exported_actor_takes_raw_observations(tmp_path) -> None:
    result = train(SACConfig(**RECIPE), show_progress=False)
    actor = result.agent.actor
    folder = tmp_path / "policy"
    save_policy_model(actor, "MountainCarContinuous-v0", folder)  # checks eager vs exported
    exported, _ = load_policy_folder(folder)
    raw = random_observations("MountainCarContinuous-v0", 64, seed=5)
    with torch.inference_mode():
        expected = actor.deterministic_action(raw)
        torch.testing.assert_close(exported(raw), expected, atol=1e-5, rtol=0)
        # The statistics matter: the same weights on un-normalized input act differently.
        unnormalized = torch.tanh(actor.head(actor.trunk(raw))[:, :1]) * actor.action_scale
        assert not torch.allclose(unnormalized + actor.action_bias, expected, atol=1e-3)
    served = _pyfunc().load_model(str(folder)).predict(raw.numpy())  # what mlflow serves
    np.testing.assert_allclose(served, expected.numpy(), atol=1e-5)
